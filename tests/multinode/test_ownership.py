"""Ownership across nodes: three (or four) daemon processes on one PostgreSQL share the accounts evenly,
move them gradually when a node joins, take a leaving node's back at once, keep a pinned account where it
is pinned, and elect a new leader when the leader is killed.

Every account always has at most one owner in the table (one column); what proves that no two nodes ever
served one account at once is the simulator's own record of connections (``NodeFleet.overlaps``).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from multinode.harness import NodeFleet, wait_for

SETUP = {"setup": {"enabled": True, "dispatch_interval_seconds": 1.0}}


def counts_of(view: dict[str, Any]) -> dict[str, int]:
    """Accounts owned per live node, as GET /v1/nodes says."""
    return {n["name"]: n["accounts"] for n in view["nodes"] if n["alive"]}


def even(counts: dict[str, int], total: int, names: set[str]) -> bool:
    share = total / len(names)
    return set(counts) == names and sum(counts.values()) == total and all(
        abs(n - share) < 1 for n in counts.values())


async def settled(fleet: NodeFleet, names: set[str], via: str, *, timeout: float = 30.0) -> dict[int, str | None]:
    """Until the accounts are spread evenly over ``names`` and each is owned by one of them; the owners."""
    async def look() -> dict[int, str | None] | None:
        counts = counts_of(await fleet.node_list(via))
        owners = await fleet.owners(via)
        spread = Counter(owners.values())
        if even(counts, fleet.accounts, names) and set(owners.values()) <= names and spread == counts:
            return owners
        return None
    return await wait_for(look, f"accounts spread evenly over {sorted(names)}", timeout=timeout)


async def test_accounts_spread_evenly_over_three_nodes_and_every_node_shows_the_same_fleet(node_fleet: Any) -> None:
    fleet: NodeFleet = node_fleet(config=SETUP)
    await fleet.start_all(3)
    names = {"n1", "n2", "n3"}
    owners = await settled(fleet, names, "n2")
    assert Counter(owners.values()) == {"n1": 10, "n2": 10, "n3": 10}
    table = fleet.ownership()
    assert {aid: owner for aid, (owner, *_) in table.items()} == owners  # the API shows the table's owner
    assert all(assigned == owner for owner, _, assigned, _ in table.values())  # each is where the balancer wants it

    # every node answers for the whole fleet: the same nodes, one leader, in status and in GET /v1/nodes
    for name in sorted(names):
        status = await fleet.api(name, "GET", "/status")
        assert status["node"] == name
        listed = {n["name"]: n for n in status["nodes"]}
        assert set(listed) == names and all(n["alive"] and n["stopped_at"] is None for n in listed.values())
        assert sum(n["leader"] for n in listed.values()) == 1, listed
        assert listed[name]["pid"] == fleet.nodes[name].proc.pid  # type: ignore[union-attr]
        assert listed[name]["http"] == fleet.nodes[name].http
        assert sum(status["accounts"].values()) == fleet.accounts
    cli = fleet.fleet.cli("nodes", "list", "--json", "--socket", str(fleet.nodes["n3"].socket_path))
    assert cli.returncode == 0 and "Traceback" not in cli.stderr, cli.stderr
    listed_by_cli = json.loads(cli.stdout)
    rows = listed_by_cli["nodes"] if isinstance(listed_by_cli, dict) else listed_by_cli
    assert {r["name"]: r["accounts"] for r in rows} == {"n1": 10, "n2": 10, "n3": 10}
    human = fleet.fleet.cli("nodes", "list", "--socket", str(fleet.nodes["n1"].socket_path), env={"COLUMNS": "300"})
    assert human.returncode == 0 and all(name in human.stdout for name in names), human.stdout + human.stderr

    # the owners connected their accounts for setup: never two connections of one account at once
    await wait_for(lambda: _setup_done(fleet), "every setup task done", timeout=30)
    assert fleet.connections(), "no simulated connection was recorded"
    for c in fleet.open_connections():  # what is connected now is connected by its owner
        assert owners[c.account_id] == c.node, f"{c.node} holds account {c.account_id}, owned by {owners[c.account_id]}"
    assert fleet.overlaps() == []
    assert fleet.duplicated_disables() == []


async def test_a_node_with_max_accounts_holds_no_more_and_the_others_share_the_rest(node_fleet: Any) -> None:
    fleet: NodeFleet = node_fleet()
    await fleet.start("n1")
    await fleet.start("n2")
    await fleet.start("n3", env={"TGFLEET_DAEMON__MAX_ACCOUNTS": "4"})

    async def spread() -> dict[str, int] | None:
        counts = counts_of(await fleet.node_list("n1"))
        return counts if counts == {"n1": 13, "n2": 13, "n3": 4} else None
    await wait_for(spread, "n3 capped at its max_accounts of 4, n1 and n2 sharing the other 26")
    capped = next(n for n in (await fleet.node_list("n2"))["nodes"] if n["name"] == "n3")
    assert capped["max_accounts"] == 4
    assert Counter((await fleet.owners("n3")).values()) == {"n1": 13, "n2": 13, "n3": 4}


async def _setup_done(fleet: NodeFleet) -> bool:
    [(left,)] = fleet.sql("SELECT count(*) FROM account_tasks WHERE status <> 'done'")
    [(made,)] = fleet.sql("SELECT count(*) FROM account_tasks")
    return made > 0 and left == 0


async def test_a_node_joining_takes_its_share_gradually_and_a_node_leaving_gives_it_back(node_fleet: Any) -> None:
    # 2 moves a second at a heartbeat of 0.5 s: one account a round, so the move takes several rounds
    fleet: NodeFleet = node_fleet(config={**SETUP, "nodes": {"moves_per_second": 2.0}})
    await fleet.start_all(2)
    before = await settled(fleet, {"n1", "n2"}, "n1")
    assert Counter(before.values()) == {"n1": 15, "n2": 15}
    await wait_for(lambda: _setup_done(fleet), "every setup task done", timeout=30)
    epochs_before = {aid: epoch for aid, (_, epoch, _, _) in fleet.ownership().items()}

    # -- n3 joins: it gets its 10, a few at a time, from both
    await fleet.start("n3")
    seen: list[dict[str, int]] = []

    async def joined() -> dict[int, str | None] | None:
        counts = counts_of(await fleet.node_list("n3"))
        seen.append(counts)
        assert sum(counts.values()) <= fleet.accounts, counts  # an account counts for one owner at most
        owners = await fleet.owners("n2")
        if even(counts, fleet.accounts, {"n1", "n2", "n3"}) and None not in owners.values():
            return owners
        return None
    after = await wait_for(joined, "n3 holding its share", timeout=45, interval=0.05)
    steps = sorted({c.get("n3", 0) for c in seen})
    assert any(0 < n < 10 for n in steps), f"n3 went from 0 to 10 in one step: {seen}"  # gradual
    moved = {aid for aid in after if after[aid] != before[aid]}
    assert len(moved) == 10 and all(after[aid] == "n3" for aid in moved)  # only what n3 needed moved
    epochs = {aid: epoch for aid, (_, epoch, _, _) in fleet.ownership().items()}
    assert all(epochs[aid] > epochs_before[aid] for aid in moved)  # a new owner, a new epoch
    assert all(epochs[aid] == epochs_before[aid] for aid in after if aid not in moved)

    # -- n3 leaves (a clean stop): its accounts are let go at once and taken back by n1 and n2
    assert await fleet.stop("n3") == 0
    stopped = next(n for n in (await fleet.node_list("n1"))["nodes"] if n["name"] == "n3")
    assert stopped["stopped_at"] is not None and not stopped["alive"] and stopped["accounts"] == 0
    final = await settled(fleet, {"n1", "n2"}, "n2")
    assert Counter(final.values()) == {"n1": 15, "n2": 15}
    # an account moves only with its owner's release: the simulator never saw two connections of one
    assert fleet.overlaps() == []
    assert fleet.duplicated_disables() == []
    assert not [c for c in fleet.open_connections() if c.node == "n3"]  # the stopped node holds nothing


async def test_a_pinned_account_moves_to_its_node_and_stays_there(node_fleet: Any) -> None:
    fleet: NodeFleet = node_fleet()
    await fleet.start_all(3)
    owners = await settled(fleet, {"n1", "n2", "n3"}, "n1")
    account = next(aid for aid, owner in sorted(owners.items()) if owner == "n1")

    # pinned through n3's socket with the CLI, to n2
    out = fleet.fleet.cli("accounts", "pin", str(account), "--node", "n2", "--socket",
                          str(fleet.nodes["n3"].socket_path))
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stdout + out.stderr

    async def on_n2() -> dict[str, Any] | None:
        view = await fleet.api("n1", "GET", f"/accounts/{account}")
        return view if view["owner"] == "n2" and view["pinned_node"] == "n2" else None
    await wait_for(on_n2, f"account {account} owned by n2, pinned there")

    # n2 stops: the pinned account waits for it, unowned (a pin is a promise), the others go to n1 and n3
    assert await fleet.stop("n2") == 0
    assert (await fleet.api("n1", "GET", f"/accounts/{account}"))["pinned_node"] == "n2"
    await wait_for(lambda: _owner_is(fleet, account, None), f"account {account} let go by the stopped n2")
    others = await wait_for(lambda: _all_owned_but(fleet, "n1", {account}), "the others served by n1 and n3")
    assert set(others.values()) == {"n1", "n3"}
    # pinning to a node that is not running is taken, with a note, and waits for it too
    other = next(aid for aid, owner in sorted(others.items()) if owner == "n3")
    answer = await fleet.api("n3", "POST", "/accounts/pin", body={"ids": [other], "node": "n2"})
    assert answer["changed"] == 1 and answer["node"] == "n2" and answer["note"], answer
    await wait_for(lambda: _owner_is(fleet, other, None), f"account {other} let go by n3, waiting for n2")
    # a node the store has never seen is refused, in one line
    unknown = fleet.fleet.cli("accounts", "pin", str(other), "--node", "n9", "--socket",
                              str(fleet.nodes["n1"].socket_path))
    assert unknown.returncode != 0 and "Traceback" not in unknown.stderr, unknown.stdout + unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1 and "n9" in unknown.stderr, unknown.stderr
    assert (await fleet.api("n1", "GET", f"/accounts/{account}"))["owner"] is None  # still waiting for n2

    # n2 is back: both go there, the fleet is even again, and they stay
    await fleet.start("n2")
    await settled(fleet, {"n1", "n2", "n3"}, "n3")
    owners = await fleet.owners("n1")
    assert owners[account] == owners[other] == "n2"
    assert fleet.ownership()[account][3] == fleet.ownership()[other][3] == "n2"

    # unpinned: they are spread like any other
    out = fleet.fleet.cli("accounts", "unpin", str(account), str(other), "--socket", str(fleet.nodes["n1"].socket_path))
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stdout + out.stderr
    await settled(fleet, {"n1", "n2", "n3"}, "n2")
    assert all(pinned is None for _, _, _, pinned in fleet.ownership().values())


async def _all_owned_but(fleet: NodeFleet, via: str, but: set[int]) -> dict[int, str | None] | None:
    owners = await fleet.owners(via)
    rest = {aid: owner for aid, owner in owners.items() if aid not in but}
    return rest if None not in rest.values() else None


async def _owner_is(fleet: NodeFleet, account: int, owner: str | None) -> bool:
    return (await fleet.api(fleet.any_live(), "GET", f"/accounts/{account}"))["owner"] == owner


async def test_killing_the_leader_hands_leadership_to_another_node_and_generation_goes_on(node_fleet: Any) -> None:
    fleet: NodeFleet = node_fleet()
    await fleet.start_all(3)
    await settled(fleet, {"n1", "n2", "n3"}, "n1")
    await fleet.add_quota("n2", name="subs", target="@tgfleet_news", action="channel_stats", quantity=1000)
    await wait_for(lambda: _tasks_since(fleet, 0.0), "the first task generated")
    leader = await wait_for(lambda: fleet.leader("n1"), "a leader")
    [(epoch_before,)] = fleet.sql("SELECT epoch FROM leadership")
    cfg = fleet.config["nodes"]
    dead_after, lease = cfg["dead_after_seconds"], cfg["lease_seconds"]

    fleet.kill(leader)
    killed_at = time.time()
    watcher = fleet.any_live()

    async def new_leader() -> str | None:
        now_leader = await fleet.leader(watcher)
        return now_leader if now_leader not in (None, leader) else None
    successor = await wait_for(new_leader, f"a leader other than the killed {leader}",
                               timeout=4 * (dead_after + lease), interval=0.05)
    took = time.time() - killed_at
    [(epoch_after,)] = fleet.sql("SELECT epoch FROM leadership")
    assert epoch_after > epoch_before
    print(f"leadership: {leader} killed, {successor} leader after {took:.2f} s (dead_after {dead_after} + lease {lease})")

    # generation goes on under the new leader, and the dead node's accounts are owned by the living
    taken = time.time()
    await wait_for(lambda: _tasks_since(fleet, taken), "a task generated after the takeover", timeout=20)

    async def served() -> bool:
        owners = await fleet.owners(watcher)
        return None not in owners.values() and leader not in owners.values()
    await wait_for(served, f"{leader}'s accounts owned by the living", timeout=4 * (dead_after + lease))
    print(f"accounts: every one owned by a live node {time.time() - killed_at:.2f} s after the kill")
    view = {n["name"]: n for n in (await fleet.node_list(watcher))["nodes"]}
    assert not view[leader]["alive"] and view[leader]["accounts"] == 0

    # the killed node comes back under its name and rejoins; the leadership stays where it went
    await fleet.restart(leader)
    await settled(fleet, {"n1", "n2", "n3"}, successor, timeout=45)
    assert await fleet.leader(leader) == successor


async def _tasks_since(fleet: NodeFleet, since: float) -> bool:
    [(n,)] = fleet.sql(f"SELECT count(*) FROM tasks WHERE created_at > {since!r}")
    return n > 0
