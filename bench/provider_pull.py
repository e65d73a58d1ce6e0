"""Quotas in pull mode at 10,000 accounts: generation, and pull+report over loopback HTTP.

1. **Generation** (in this process, the daemon's own code): a fresh store with
   10,000 accounts and 10,000 eligible ``post_stats`` quotas whose posts
   snapshots are fresh, the daemon's commit hook on. Timed: one
   ``Generator.tick()`` that makes a task for every quota (each with an account
   reserved, a post picked, cursor and next run advanced), three times.
2. **Pull+report** against a real ``tgdaemon run --simulate`` subprocess with
   10,000 accounts, all assigned to one provider. 10,000 ``channel_stats``
   quotas, already inspected, are written into its database by this process
   (the control API inspects each with a probe call; that is not what is
   measured). The daemon's generator refills a backlog of 10,000 pending tasks
   (one per account) every 10 s; this process drains it over HTTP on
   127.0.0.1 as a provider would:
   - batched: 4 clients, each pulling 100 and reporting those 100 in one
     request, from the first pull to the last report of a backlog;
   - unbatched: 16 clients, each pulling 1 and reporting it, counted as HTTP
     round trips per second over a fixed window.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench._common import daemon_subprocess, scratch_dir, write_config
from bench.report import Result, median

TITLE = "Quotas in pull mode: generation, and pull+report over loopback"
ACCOUNTS = int(os.environ.get("BENCH_PULL_ACCOUNTS", "10000"))
GEN_TARGET_S = 2.0
HISTORY = 100_000
BATCHED_TARGET = 10_000.0
UNBATCHED_TARGET = 1_500.0
BATCH = 100
BATCH_CLIENTS = 4
SINGLE_CLIENTS = 16
DRAINS = 3
UNBATCHED_WINDOW_S = 6.0
WAIT_S = 60.0
SETTLE_S = 1.0


def daemon_config(accounts: int) -> str:
    """A backlog of one task per account every 10 s, no local executor, no simulated faults."""
    return f"""
[quotas]
generate_interval_seconds = 10.0
max_tasks_per_tick = {accounts}
pace_seconds = 0
daily_cap = 1000000000
local_concurrency = 0
lease_seconds = 120
[simulator]
probe_fraction = 0.0
dead_fraction = 0.0
"""


DAEMON_CONFIG = daemon_config(ACCOUNTS)

ABOUT = f"""\
Issue 5 item 8. **Generation**: a fresh store with {ACCOUNTS:,} accounts (none a probe) and {ACCOUNTS:,}
eligible `post_stats` quotas with fresh posts snapshots (5 posts each), the daemon's commit hook on;
timed is one `Generator.tick()` making {ACCOUNTS:,} tasks (SQL eligibility, post pick, reserve claims
on the least recently used accounts, cursor and next run advanced, in one transaction), 3 runs, the
tasks and reservations deleted between runs; then once more with {HISTORY:,} finished tasks of those
quotas in the table. **Pull+report**: a `tgdaemon run --simulate` subprocess
with {ACCOUNTS:,} accounts assigned to one provider and {ACCOUNTS:,} `channel_stats` quotas written
into its database already inspected; its generator refills a backlog of {ACCOUNTS:,} pending tasks
every 10 s (so a tick never lands inside a timed drain). Batched: {BATCH_CLIENTS} concurrent clients each pull {BATCH} and report them in one
request (aiohttp over 127.0.0.1, keep-alive); timed from the first pull to the last report of a
backlog, {DRAINS} backlogs. Unbatched: {SINGLE_CLIENTS} clients each pull 1 and report it; every
HTTP request counts as one round trip; {UNBATCHED_WINDOW_S:.0f} s window. The clients run in the
benchmark's own process, on the same 2 cores as the daemon.
"""

_notes: list[str] = []


def notes() -> list[str]:
    return _notes


async def _finished_history(store: Any, n: int) -> None:
    """``n`` done tasks spread over the quotas and their posts, by accounts other than the next ones."""
    at = time.time() - 3600
    async with store.tx() as tx:
        await tx.conn.executemany(
            "INSERT INTO tasks (subject_type, subject_id, account_id, action, target, post_id, status, created_at,"
            " reported_at) VALUES ('quota', ?, ?, 'post_stats', '@tgfleet_news', ?, 'done', ?, ?)",
            [(i % ACCOUNTS + 1, (i * 7) % ACCOUNTS + 1, i % 5 + 1, at, at) for i in range(n)])


async def generation() -> list[float]:
    from tgdaemon import config
    from tgdaemon.gateway.simulator import Simulator
    from tgdaemon.lifecycle.daemon import change_publisher
    from tgdaemon.quotas.generator import Generator
    from tgdaemon.quotas.leases import Leases
    from tgdaemon.quotas.probe import Probes
    from tgdaemon.store.sqlite import SQLiteStore
    from tgdaemon.stream import Hub

    seconds: list[float] = []
    with scratch_dir("tgfbq") as work:
        cfg = config.load(write_config(work), env={}, overrides={
            "simulator": {"accounts": ACCOUNTS, "probe_fraction": 0.0},
            "quotas": {"max_tasks_per_tick": ACCOUNTS, "pace_seconds": 0}})
        store = await SQLiteStore.open(work / "db.sqlite3")
        try:
            store.on_commit = change_publisher(await Hub.open(store, queue_size=20000, replay_size=50000))
            sim = Simulator(cfg.simulator)
            async with store.tx() as tx:
                await store.insert_accounts(tx, ({"phone": s.phone, "tg_user_id": s.tg_user_id, "label": s.label,
                                                  "is_probe": 0, "profile_json": "{}"} for s in sim.seeds()))
                at = time.time()
                await tx.conn.executemany(
                    "INSERT INTO quotas (name, target, action, last_n_posts, quantity_total, quantity_left,"
                    " interval_seconds, expires_at, inspection_ok, posts_fetched_at, posts_json, created_at)"
                    " VALUES (?, '@tgfleet_news', 'post_stats', 5, 1000000, 1000000, 60, ?, 1, ?, '[5,4,3,2,1]', ?)",
                    [(f"q{i}", at + 86400, at, at) for i in range(ACCOUNTS)])
            leases = Leases(cfg, store)
            gen = Generator(cfg, store, sim, Probes(cfg, store), leases)
            for run in range(4):
                if run == 3:  # once more with a history: what a long-running fleet's table holds
                    await _finished_history(store, HISTORY)
                started = time.perf_counter()
                made = await gen.tick()
                seconds.append(time.perf_counter() - started)
                if made.tasks < ACCOUNTS * 0.99:  # with a history, the last quotas may find only used accounts
                    raise RuntimeError(f"generation made {made.tasks} tasks, expected {ACCOUNTS}")
                async with store.tx() as tx:
                    await tx.execute("DELETE FROM tasks")
                    await tx.execute("DELETE FROM account_locks")
                    await tx.execute("UPDATE quotas SET next_run_at = NULL, cursor = 0")
                    await tx.execute("UPDATE accounts SET last_used_at = NULL")
        finally:
            await store.close()
    return seconds


def seed_quotas(db: Path) -> None:
    """Already-inspected channel_stats quotas, due at every tick (the API's 1 s minimum interval is a
    guard for operators; here each quota must be due whenever its account is free)."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        at = time.time()
        with conn:
            conn.executemany(
                "INSERT INTO quotas (name, target, action, quantity_total, orders_left, interval_seconds,"
                " expires_at, inspection_ok, created_at) VALUES (?, '@tgfleet_markets', 'channel_stats',"
                " 1000000000, 1000000000, 0.001, ?, 1, ?)", [(f"b{i}", at + 86400, at) for i in range(ACCOUNTS)])
    finally:
        conn.close()


class Provider:
    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base
        self.requests = 0
        self.applied = 0

    async def post(self, path: str, body: Any) -> Any:
        async with self.http.post(self.base + path, data=json.dumps(body).encode()) as resp:
            self.requests += 1
            if resp.status != 200:
                raise RuntimeError(f"{path}: HTTP {resp.status}: {(await resp.read())[:200]!r}")
            return await resp.json()

    async def cycle(self, limit: int) -> int:
        tasks = (await self.post("/api/provider/telegram/tasks/pull", {"limit": limit}))["tasks"]
        if not tasks:
            return 0
        reports = [{"status": "done", "task_id": t["task_id"], "lease_token": t["lease_token"],
                    "result": {"subscribers": 1000 + t["account_id"], "title": "Markets"}} for t in tasks]
        answer = await self.post("/api/provider/telegram/tasks/report", reports if limit > 1 else reports[0])
        applied = sum(r["outcome"] == "applied" for r in answer["results"])
        self.applied += applied
        return applied


async def pending(p: Provider, control: Any) -> int:
    return (await control.status())["tasks"]["pulled"].get("pending", 0)


async def wait_backlog(p: Provider, control: Any, size: int) -> None:
    """Until every worker account has a pending task (the generator's next tick)."""
    deadline = time.monotonic() + WAIT_S
    for _ in range(int(WAIT_S / 0.1)):
        if await pending(p, control) >= size:
            await asyncio.sleep(SETTLE_S)  # the generating transaction's deltas are still being published
            return
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    raise RuntimeError(f"no backlog of {size} pending tasks within {WAIT_S:.0f} s")


async def drain(providers: list[Provider]) -> tuple[float, int]:
    """Every client cycles until a pull comes back empty; (seconds, tasks applied)."""
    before = sum(p.applied for p in providers)

    async def worker(p: Provider) -> None:
        for _ in range(ACCOUNTS):  # bounded: a backlog holds at most ACCOUNTS tasks
            if not await p.cycle(BATCH):
                return

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker(p) for p in providers)), WAIT_S)
    return time.perf_counter() - started, sum(p.applied for p in providers) - before


async def unbatched(providers: list[Provider]) -> tuple[float, int, int]:
    """(seconds, round trips, tasks applied) over the window."""
    before_rt, before_ok = sum(p.requests for p in providers), sum(p.applied for p in providers)
    deadline = time.monotonic() + UNBATCHED_WINDOW_S

    async def worker(p: Provider) -> None:
        for _ in range(100_000):
            if time.monotonic() > deadline or not await p.cycle(1):
                return

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker(p) for p in providers)), UNBATCHED_WINDOW_S + WAIT_S)
    took = time.perf_counter() - started
    return took, sum(p.requests for p in providers) - before_rt, sum(p.applied for p in providers) - before_ok


async def pull_report() -> dict[str, Any]:
    from tgdaemon.control.client import ControlClient

    out: dict[str, Any] = {}
    with scratch_dir("tgfbp") as work:
        async with daemon_subprocess(work, accounts=ACCOUNTS, config=DAEMON_CONFIG) as daemon:
            async with ControlClient(daemon.socket, timeout=60) as control:
                token = (await control.request("POST", "/providers", body={"name": "bench"}))["token"]
                ids = [a["id"] for a in await control.all_accounts() if not a["is_probe"]]  # the simulator keeps one
                await control.request("POST", "/accounts/assign", body={"ids": ids, "executor": "bench"})
                seed_quotas(daemon.data_dir / "tgfleet.sqlite3")
                http_at = (await control.status())["http"]
                headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
                conn = aiohttp.TCPConnector(limit=64)
                async with aiohttp.ClientSession(headers=headers, connector=conn) as http:
                    base = f"http://{http_at}"
                    batchers = [Provider(http, base) for _ in range(BATCH_CLIENTS)]
                    rates = []
                    for _ in range(DRAINS):
                        await wait_backlog(batchers[0], control, len(ids))
                        took, applied = await drain(batchers)
                        rates.append(applied / took)
                        out.setdefault("drains", []).append((applied, took))
                    out["batched"] = rates
                    await wait_backlog(batchers[0], control, len(ids))
                    singles = [Provider(http, base) for _ in range(SINGLE_CLIENTS)]
                    out["unbatched"] = await unbatched(singles)
    return out


async def run() -> list[Result]:
    gen = await generation()
    pr = await pull_report()
    batched = pr["batched"]
    took, round_trips, applied = pr["unbatched"]
    _notes.clear()
    _notes.append("Backlogs drained (tasks, seconds): " + ", ".join(f"{n:,} in {s:.2f}" for n, s in pr["drains"]))
    _notes.append(f"Unbatched: {round_trips:,} round trips ({applied:,} tasks pulled and reported) in {took:.1f} s.")
    return [
        Result(f"generation of {ACCOUNTS:,} tasks for {ACCOUNTS:,} quotas (median of 3)", median(gen[:3]), "s",
               target=GEN_TARGET_S, note=f"runs: {', '.join(f'{s:.2f}' for s in gen[:3])} s"),
        Result(f"the same with {HISTORY:,} finished tasks in the table", round(gen[3], 2), "s", target=GEN_TARGET_S),
        Result(f"pull+report, batched by {BATCH} ({BATCH_CLIENTS} clients; median of {DRAINS} backlogs)",
               round(statistics.median(batched)), "tasks/s", target=BATCHED_TARGET, lower_is_better=False,
               note=f"each: {', '.join(f'{r:,.0f}' for r in batched)}"),
        Result(f"pull+report, unbatched ({SINGLE_CLIENTS} clients)", round(round_trips / took), "round trips/s",
               target=UNBATCHED_TARGET, lower_is_better=False, note=f"{applied / took:,.0f} tasks/s"),
    ]
