"""Nodes and the balancer's counts as both drivers give them: written once, from the rows they read.

Liveness is decided here, not in SQL, so that ``list_nodes`` and ``register_node`` cannot disagree on
who is alive: a node is alive when it has not stopped and its heartbeat is within ``dead_after`` of the
database's time (design 9).
"""

from __future__ import annotations

from collections.abc import Iterable

from tgdaemon.store.api import Assignment, NodeInfo, Row

LEADERSHIP = "fleet"  # the one row of the leadership table


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
