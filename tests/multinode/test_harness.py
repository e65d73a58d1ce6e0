"""The overlap check the other multi-node tests lean on can fail: a second live connection of one account
is flagged, and a connection that follows its holder's death is not."""

from __future__ import annotations

import os
from typing import Any

from multinode.harness import Connection, NodeFleet, wait_for
from tgdaemon.store.api import SimConnection
from tgdaemon.store.postgres import PostgresStore


def alive(pids: list[int]) -> set[int]:
    """What the simulated server takes for a live holder: a process that exists."""
    out = set()
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        out.add(pid)
    return out


async def test_the_overlap_check_flags_a_second_live_connection_and_not_one_after_the_holders_death(
        node_fleet: Any) -> None:
    fleet: NodeFleet = node_fleet(accounts=10)
    await fleet.start("n1")
    for target in ("@tgfleet_news", "@tgfleet_markets"):  # its local executor connects two accounts or more
        await fleet.add_quota("n1", name=f"subs {target}", target=target, action="channel_stats", quantity=100)

    async def two_open() -> list[Connection] | None:
        held = fleet.open_connections()
        return held[:2] if len({c.account_id for c in held}) >= 2 and len(held) >= 2 else None
    first, second = await wait_for(two_open, "two accounts connected by n1")
    assert fleet.overlaps() == []
    timeout = float(fleet.config["simulator"]["server_timeout_seconds"])
    store = await PostgresStore.open(fleet.url)
    try:
        # another process connects as an account n1 holds: refused, and on the record, so the check sees it
        refused = await store.sim_open(first.tg_user_id, "intruder", os.getpid(), alive, timeout)
        assert isinstance(refused, SimConnection) and refused.id == first.id
        assert [(a.id, b.node) for a, b in fleet.overlaps()] == [(first.id, "intruder")]

        # once its holder is dead, the account's next connection overlaps nothing
        fleet.kill("n1")
        opened = await store.sim_open(second.tg_user_id, "intruder", os.getpid(), alive, timeout)
        assert isinstance(opened, int)
        assert [(a.id, b.node) for a, b in fleet.overlaps()] == [(first.id, "intruder")]
        await store.sim_close([opened], "test")
    finally:
        await store.close()
