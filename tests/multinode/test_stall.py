"""A node that stalls (SIGSTOP) past its lease while it has work in flight: the others take its accounts
and its tasks, and when it comes back (SIGCONT) it finds them gone, lets go of its clients before
anything else, and nothing it had in flight is applied twice."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from multinode.harness import NodeFleet, books, quiesced, wait_for
from multinode.test_ownership import settled

TARGETS = ("@tgfleet_news", "@tgfleet_markets", "@tgfleet_weather", "@tgfleet_sports")
SLOW_CALLS = {"TGFLEET_SIMULATOR__LATENCY_MIN_MS": "100", "TGFLEET_SIMULATOR__LATENCY_MAX_MS": "300"}
# A frozen process keeps its connections open until the server drops them for silence: here twice the lease,
# so a takeover at the lease's end would connect beside them (AUTH_KEY_DUPLICATED). The takeover grace is what
# keeps the next owner off them (config.example.toml, nodes.takeover_grace_seconds).
FROZEN = {"TGFLEET_SIMULATOR__SERVER_TIMEOUT_SECONDS": "6", "TGFLEET_NODES__TAKEOVER_GRACE_SECONDS": "6"}
IN_FLIGHT = ("SELECT t.id, t.lease_token FROM tasks t JOIN accounts a ON a.id = t.account_id WHERE t.status = 'leased'"
             " AND t.leased_by = 'local' AND a.owner = 'n1' ORDER BY t.id")
# A transaction of the stopped process left open would hold its locks for as long as it is stopped: that
# is another story (the server's idle_in_transaction_session_timeout), not this test's.
STUCK = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in"
         " transaction%' AND xact_start < now() - interval '300 milliseconds'")


async def test_a_node_stalled_past_its_lease_finds_its_accounts_gone_and_applies_nothing_twice(
        node_fleet: Any) -> None:
    fleet: NodeFleet = node_fleet(env=SLOW_CALLS | FROZEN)
    await fleet.start_all(3)
    names = {"n1", "n2", "n3"}
    await settled(fleet, names, "n2")
    quotas = [await fleet.add_quota("n2", name=f"subs {t}", target=t, action="channel_stats", quantity=10_000)
              for t in TARGETS]
    cfg = fleet.config["nodes"]
    bound = 4 * (cfg["dead_after_seconds"] + cfg["lease_seconds"]) + 2 * float(FROZEN[
        "TGFLEET_NODES__TAKEOVER_GRACE_SECONDS"])
    proc = fleet.nodes["n1"].proc
    assert proc is not None

    async def leased_by_n1() -> list[tuple[Any, ...]] | None:
        return fleet.sql(IN_FLIGHT) or None

    frozen: list[tuple[Any, ...]] = []
    for _ in range(20):  # stop it while it has a task of its own in flight (and no transaction open)
        await wait_for(leased_by_n1, "a task in flight on n1", timeout=20, interval=0.02)
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(0.4)
        frozen = fleet.sql(IN_FLIGHT)
        if frozen and fleet.sql(STUCK) == [(0,)]:
            break
        os.kill(proc.pid, signal.SIGCONT)
        frozen = []
    assert frozen, "n1 never stopped with a task in flight"
    stalled = time.monotonic()
    try:
        async def taken() -> bool:
            owners = await fleet.owners("n3")
            return set(owners.values()) <= {"n2", "n3"}
        await wait_for(taken, "n1's accounts owned by n2 and n3 while n1 is stopped", timeout=bound)
        took = time.monotonic() - stalled
        # its leases ended when their accounts were taken (the reaper hands the tasks out again): none it holds
        # is still good
        [(left,)] = fleet.sql("SELECT count(*) FROM tasks WHERE status = 'leased' AND lease_expires_at >"
                              " extract(epoch FROM clock_timestamp()) AND lease_token IN ("
                              + ",".join(f"'{token}'" for _, token in frozen) + ")")
        assert left == 0
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    print(f"stall: n1 stopped with {len(frozen)} task(s) in flight; its accounts owned by the others"
          f" {took:.2f} s later")

    # n1 comes back: it fences first (lets go of every client), renews (its name is still its own) and rejoins
    await settled(fleet, names, "n1", timeout=45)
    assert proc.returncode is None, fleet.logs()
    assert "could not renew its lease in time" in proc.log()  # the fence said so, in one line

    for quota in quotas:
        await fleet.api("n3", "POST", f"/quotas/{quota}/pause")
    await quiesced(fleet, "n2")
    for quota, total, left, done, measurements, counted, measured_tasks in books(fleet):
        assert total - left == done == measurements == counted == measured_tasks, (
            quota, total, left, done, measurements, counted, measured_tasks)
    measured = dict(fleet.sql("SELECT task_id, count(*) FROM measurements WHERE task_id = ANY(ARRAY["
                              + ",".join(str(tid) for tid, _ in frozen) + "]::bigint[]) GROUP BY task_id"))
    assert all(n == 1 for n in measured.values()), measured  # what it had in flight: applied once at most
    assert fleet.overlaps() == []
    assert fleet.duplicated_disables() == []
