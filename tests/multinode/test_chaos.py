"""The chaos run: cycles of ``kill -9`` of a random node while a provider pulls and reports against the
others, the node restarted, and on; then, with everything quiesced, the books must balance exactly.

Half the accounts are the provider's, half the nodes' own local executors'; setup runs on every owner.
Every third cycle waits, before restarting the killed node, until every account is owned by a live
node: that is the failover time printed at the end (with ``-s``). The other cycles restart at once, so
the new process must wait for its killed incarnation to be taken for dead and then take its accounts
back. ``TGFLEET_CHAOS_CYCLES`` sets the number of cycles (default 20, so that ``make test`` stays under
ten minutes on 2 cores; 30 passed in the runs of issue 12).

At the end: per quota total - left = done tasks = measurement rows; every report the provider was told
``applied`` is durable (its task done with that result, measured once); no task applied twice; every
account owned by a live node; no two simulated connections of one account overlapping in time (from the
simulator's own record, a killed process's connections ending at its death); no account disabled for
AUTH_KEY_DUPLICATED.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from multinode.harness import Node, NodeFleet, ProviderClient, books, quiesced, wait_for
from multinode.test_ownership import settled

CYCLES = int(os.environ.get("TGFLEET_CHAOS_CYCLES", "20"))
BUDGET = 200.0  # seconds for the cycles: past it the run stops early and says how many it ran
TARGETS = ("@tgfleet_news", "@tgfleet_markets", "@tgfleet_weather", "@tgfleet_sports")
LEASE = 5.0  # the provider's leases: a pull whose answer a kill cut off comes back this soon
CONFIG = {"setup": {"enabled": True, "dispatch_interval_seconds": 2.0}}
SLOW_CALLS = {"TGFLEET_SIMULATOR__LATENCY_MIN_MS": "2", "TGFLEET_SIMULATOR__LATENCY_MAX_MS": "15"}
LOST = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)


@dataclass
class Chaos:
    """What the provider's loop and the killer share."""

    fleet: NodeFleet
    p: ProviderClient
    victim: str | None = None
    stop: bool = False
    unanswered: list[dict[str, Any]] = field(default_factory=list)  # reports whose answer a kill took
    lost_pulls: int = 0
    lost_reports: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(12))

    def targets(self) -> list[Node]:
        return [n for n in self.fleet.live() if n.http is not None and n.name != self.victim]


async def provide(chaos: Chaos) -> None:
    """Pull from one node, report to another (retrying a report whose answer was lost, to any node, with
    the same lease token), until told to stop and nothing is left unanswered."""
    p, rng = chaos.p, chaos.rng
    for _ in range(100_000):
        nodes = chaos.targets()
        if chaos.stop and not chaos.unanswered:
            return
        if not nodes:
            await asyncio.sleep(0.05)
            continue
        got: list[dict[str, Any]] = []
        if not chaos.stop:
            source = rng.choice(nodes)
            try:
                got = await p.pull(source, limit=5, lease_seconds=LEASE)
            except LOST:
                chaos.lost_pulls += 1  # leased perhaps, never seen: the reaper gives it back
        batch, chaos.unanswered = chaos.unanswered + got, []
        if batch:
            sink = rng.choice(chaos.targets() or nodes)
            try:
                await p.report(sink, batch)
            except LOST:
                chaos.lost_reports += 1
                chaos.unanswered = batch
        await asyncio.sleep(0.02)
    raise AssertionError("the provider's loop ran out of rounds")


async def every_account_owned_by(fleet: NodeFleet, alive: set[str], *, timeout: float) -> float:
    """Until every account is owned by one of ``alive`` (bounded); when that was seen (monotonic)."""
    async def look() -> float | None:
        via = fleet.any_live()
        owners = await fleet.owners(via)
        return time.monotonic() if set(owners.values()) <= alive else None
    return await wait_for(look, f"every account owned by one of {sorted(alive)}", timeout=timeout, interval=0.05)


async def test_chaos_kill_nodes_while_a_provider_works_and_the_books_balance(node_fleet: Any) -> None:
    fleet: NodeFleet = node_fleet(config=CONFIG, env=SLOW_CALLS)
    await fleet.start_all(3)
    names = {"n1", "n2", "n3"}
    await settled(fleet, names, "n1")
    cfg = fleet.config["nodes"]
    bound = 4 * (cfg["dead_after_seconds"] + cfg["lease_seconds"])  # a wait's bound, not a promise of speed

    token = await fleet.provider_token("n1", "acme")
    async with fleet.nodes["n2"].client() as c:
        workers = [a["id"] for a in await c.all_accounts() if not a["is_probe"]]
    await fleet.assign("n2", workers[::2], "acme")  # the others stay the nodes' own (local)
    quotas = [await fleet.add_quota("n3", name=f"posts {t}", target=t, action="post_stats", last_n_posts=10,
                                    quantity=100_000) for t in TARGETS]
    quotas += [await fleet.add_quota("n1", name=f"subs {t}", target=t, action="channel_stats", orders=100_000)
               for t in TARGETS]

    failovers: list[float] = []
    takeovers: list[float] = []
    restarts: list[float] = []
    rng = random.Random(2026)
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        chaos = Chaos(fleet, ProviderClient(http, token))
        provider = asyncio.create_task(provide(chaos))
        try:
            await wait_for(lambda: _applied(chaos), "the provider's first applied report", timeout=30)
            cycles = 0
            for cycle in range(CYCLES):
                if time.monotonic() - started > BUDGET:
                    break
                if provider.done():
                    provider.result()  # its failure, as it was
                    raise AssertionError("the provider stopped")
                victim = rng.choice(sorted(n.name for n in fleet.live()))
                leader = await fleet.leader(fleet.any_live(but=[victim]))
                chaos.victim = victim
                fleet.kill(victim)
                killed = time.monotonic()
                if cycle % 3 == 0:  # wait for the others to take over, and time it
                    rest = names - {victim}
                    failovers.append(await every_account_owned_by(fleet, rest, timeout=bound) - killed)
                    if leader == victim:
                        await wait_for(lambda: _led_by(fleet, rest), "a new leader", timeout=bound)
                        takeovers.append(time.monotonic() - killed)
                began = time.monotonic()
                await fleet.restart(victim)
                restarts.append(time.monotonic() - began)
                chaos.victim = None
                cycles += 1
                await asyncio.sleep(rng.uniform(0.2, 1.0))
            # -- quiesce: no new work, the provider answered for everything it pulled, no lease left
            for quota in quotas:
                await fleet.api(fleet.any_live(), "POST", f"/quotas/{quota}/pause")
            chaos.stop = True
            await asyncio.wait_for(provider, 60)
        finally:
            chaos.stop = True
            if not provider.done():
                provider.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await provider
    ran = time.monotonic() - started
    await quiesced(fleet, "n1", timeout=60)
    await every_account_owned_by(fleet, names, timeout=bound)
    p = chaos.p

    # -- the books
    for quota, total, left, done, measurements, counted, measured_tasks in books(fleet):
        assert total - left == done == measurements == counted == measured_tasks, (
            quota, total, left, done, measurements, counted, measured_tasks)
    [(rows, distinct)] = fleet.sql("SELECT count(*), count(DISTINCT task_id) FROM measurements")
    assert rows == distinct, f"{rows - distinct} tasks measured twice"  # no task applied twice
    done = {tid: (status, json.loads(r) if isinstance(r, str) else r, n) for tid, status, r, n in fleet.sql(
        "SELECT t.id, t.status, t.result_json, (SELECT count(*) FROM measurements m WHERE m.task_id = t.id)"
        " FROM tasks t")}
    for tid, sent in p.applied.items():  # every `applied` durable, with what was sent
        status, result, measured = done[tid]
        assert status == "done" and measured == 1 and all(result.get(k) == v for k, v in sent.items()), (
            tid, done[tid], sent)
    assert p.pulled_after_applied == []  # an applied task is never handed out again
    for tid, answers in p.answers.items():  # a report whose first answer a kill took may come back duplicate
        if "applied" not in answers and "duplicate" in answers:
            status, result, measured = done[tid]
            sent = p.result_for(p.tasks[tid])
            assert status == "done" and measured == 1 and all(result.get(k) == v for k, v in sent.items()), (
                tid, done[tid], sent)
    [(local_done,)] = fleet.sql("SELECT count(*) FROM tasks t JOIN accounts a ON a.id = t.account_id"
                                " WHERE t.status = 'done' AND a.executor = 'local'")
    print(f"\nchaos: {cycles} cycles of kill -9 in {ran:.0f} s; provider: {len(p.applied)} reports applied, "
          f"{len(p.pulled)} tasks pulled, {chaos.lost_pulls} pulls and {chaos.lost_reports} reports cut off by a "
          f"kill; local executors: {local_done} tasks done")
    if failovers:
        print(f"failover (every account owned by a live node after a kill -9), {len(failovers)} kills: "
              f"median {statistics.median(failovers):.2f} s, max {max(failovers):.2f} s")
    if takeovers:
        print(f"leader takeover, {len(takeovers)} kills of the leader: median {statistics.median(takeovers):.2f} s,"
              f" max {max(takeovers):.2f} s")
    print(f"restart until ready: median {statistics.median(restarts):.2f} s, max {max(restarts):.2f} s")
    # -- ownership and connections
    table = fleet.ownership()
    assert all(owner in names for owner, *_ in table.values()), table
    assert fleet.duplicated_disables() == []
    [(setup_stuck,)] = fleet.sql("SELECT count(*) FROM account_tasks WHERE status IN ('running', 'failed')")
    assert setup_stuck == 0
    assert cycles >= min(CYCLES, 10), f"only {cycles} cycles within {BUDGET:.0f} s"
    assert len(p.applied) > 0
    overlaps = fleet.overlaps()
    print(f"simulated connections: {len(fleet.connections())}, {len(overlaps)} overlapping")
    assert overlaps == [], overlaps[:5]

async def _applied(chaos: Chaos) -> bool:
    return bool(chaos.p.applied)


async def _led_by(fleet: NodeFleet, names: set[str]) -> bool:
    return (await fleet.leader(fleet.any_live())) in names
