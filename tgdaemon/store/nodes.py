"""Nodes and the balancer's counts as both drivers give them: written once, from the rows they read.

Liveness is decided here, not in SQL, so that ``list_nodes`` and ``register_node`` cannot disagree on
who is alive: a node is alive when it has not stopped and its heartbeat is within ``dead_after`` of the
database's time (design 9).
"""

from __future__ import annotations

from collections.abc import Iterable

from tgdaemon.store.api import Assignment, NodeInfo, OwnedAccount, Row

LEADERSHIP = "fleet"  # the one row of the leadership table

# The digest of what a node owns: how many accounts, and a sum of one term per account that changes with
# its id, epoch, assignment and disabled flag (squared modulo a prime, so that two changes do not cancel
# out as a plain sum would). The same arithmetic here and in SQL; every intermediate fits in 63 bits.
_TERM = "(a.id * 1000003 + a.owner_epoch * 8191 + {moved} * 131 + {disabled} * 17) % 2147483647"
_MOVED = "CASE WHEN a.assigned_node = {me} THEN 0 ELSE 1 END"
_DISABLED = "CASE WHEN a.disabled_at IS NULL THEN 0 ELSE 1 END"


def owned_digest_sql(me: str, where: str) -> str:
    """The digest as one aggregate over the accounts ``a`` that ``where`` selects; ``me`` is the node
    name's placeholder."""
    term = _TERM.format(moved=_MOVED.format(me=me), disabled=_DISABLED)
    return (f"SELECT count(*) AS n, coalesce(sum(x * x % 1000000007), 0) AS s"
            f" FROM (SELECT {term} AS x FROM accounts a WHERE {where}) t")


def owned_digest(owned: Iterable[OwnedAccount], me: str) -> tuple[int, int]:
    n = s = 0
    for a in owned:
        x = (a.id * 1000003 + a.epoch * 8191 + (a.assigned != me) * 131 + a.disabled * 17) % 2147483647
        n, s = n + 1, s + x * x % 1000000007
    return n, s


def alive(row: Row, at: float, dead_after: float) -> bool:
    return row["stopped_at"] is None and row["heartbeat_at"] > at - dead_after


def node_info(row: Row, *, at: float, dead_after: float) -> NodeInfo:
    """A nodes row, with ``accounts`` (owned now) and ``leader`` selected beside it."""
    return NodeInfo(
        name=row["name"], host=row["host"], pid=row["pid"], version=row["version"], http=row["http"],
        max_accounts=row["max_accounts"], started_at=row["started_at"], heartbeat_at=row["heartbeat_at"],
        owned_until=row["owned_until"], stopped_at=row["stopped_at"], accounts=int(row["accounts"]),
        leader=bool(row["leader"]), alive=alive(row, at, dead_after))


def assignment(groups: Iterable[tuple[str | None, str | None, int]], live: list[str]) -> Assignment:
    """From (assigned_node, pinned_node, accounts) groups. A pinned account counts on its pinned node, or
    as waiting for it when that node is not live; an unpinned one on its assigned node, or as an orphan."""
    assigned = dict.fromkeys(live, 0)
    pinned = dict.fromkeys(live, 0)
    orphans = pinned_away = 0
    for node, pin, n in groups:
        if pin is not None:
            if pin in pinned:
                pinned[pin] += n
                assigned[pin] += n
            else:
                pinned_away += n
        elif node in assigned:
            assigned[node] += n
        else:
            orphans += n
    return Assignment(assigned=assigned, pinned=pinned, orphans=orphans, pinned_away=pinned_away)


def prior_until(old: Row | None, incarnation: str) -> float:
    """What a registration keeps of the name's earlier incarnation: until when the accounts it still owns
    under the name stay its own (it may be stalled, not dead, and fences itself only by its own clock).
    A clean stop released them all, unless they were still an incarnation's before it (kept in its row)."""
    if old is None:
        return 0.0
    if old["incarnation"] == incarnation or old["stopped_at"] is not None:
        return float(old["prior_until"])
    return max(float(old["owned_until"]), float(old["prior_until"]))
