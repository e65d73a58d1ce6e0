"""One measurement of bench/stores.py, in a process of its own, on the code of one tree.

Run by path, never imported: ``python bench/_stores_worker.py TREE JOB JSON-ARGS``. ``TREE`` is the
checkout whose ``tgdaemon`` is measured (this worktree, or the pre-issue-11 code exported to a
scratch dir), put first on ``sys.path``; nothing of ``bench`` is imported, so the same file runs
on both. The two trees differ only in how a store is opened (``tgdaemon.store.connect.open_url``
now, ``tgdaemon.store.Store.open(path)`` before issue 11); every fixture goes through the store
interface both share (insert_accounts, dispatch_setup, add_quota, record_inspection,
record_posts, lease_tasks, finish_tasks), so one code seeds SQLite and PostgreSQL alike. The result
is one JSON line on stdout. Every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # the script's own directory (bench/) must not shadow anything
    sys.path.pop(0)
    sys.path.insert(0, sys.argv[1])

ACCOUNTS = 10_000


def new_code() -> bool:
    try:
        import tgdaemon.store.connect  # noqa: F401
    except ImportError:
        return False
    return True


async def open_store(url: str, synchronous: str = "full") -> Any:
    if new_code():
        from tgdaemon.store.connect import open_url, parse_url

        return await open_url(parse_url(url), synchronous=synchronous)
    from tgdaemon.store import (
        Store,  # before issue 11: one SQLite store class, opened by its path
    )

    assert url.startswith("sqlite://"), url
    return await Store.open(Path(url.removeprefix("sqlite://")), synchronous)


def make_config(work: Path, url: str, overrides: dict[str, Any]) -> Any:
    from tgdaemon import config

    work.mkdir(parents=True, exist_ok=True)
    path = work / "config.toml"
    path.write_text('[daemon]\nlog_level = "warning"\n')
    base: dict[str, Any] = {
        "daemon": {"data_dir": str(work / "data"), "socket": str(work / "d.sock"), "http": "127.0.0.1:0",
                   "log_level": "warning"},
        "simulator": {"accounts": ACCOUNTS, "probe_fraction": 0.0, "dead_fraction": 0.0, "latency_min_ms": 0.0,
                      "latency_max_ms": 0.0, "flood_wait_rate": 0.0, "peer_flood_rate": 0.0, "transient_rate": 0.0},
    }
    if url.startswith("postgresql"):
        base["store"] = {"url": url}
    for key, value in overrides.items():
        base.setdefault(key, {}).update(value)
    return config.load(path, env={}, overrides=base)


async def seed_accounts(store: Any, sim: Any) -> None:
    """The simulator's accounts, none a probe, as the setup and generation benches have always seeded them."""
    async with store.tx() as tx:
        await store.insert_accounts(tx, (
            {"phone": s.phone, "tg_user_id": s.tg_user_id, "label": s.label, "is_probe": 0,
             "first_name": s.first_name, "last_name": s.last_name, "profile_json": "{}"} for s in sim.seeds()))
        await store.set_meta(tx, "gateway", sim.name)


def server_cpu(pid: int) -> float:
    """CPU seconds of a PostgreSQL server: the postmaster, its live children, and its children gone."""
    if not pid:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == pid:
            total += sum(int(f) for f in fields[11:15]) / tick  # utime, stime, cutime, cstime
        elif int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


async def commit_hook(store: Any, queue_size: int, replay_size: int) -> Any:
    """The daemon's commit hook as the tree being measured builds it: this one's stream follows the event
    log (``Hub.open``); the tree before issue 11 (701be43) published from the hook itself."""
    from tgdaemon.lifecycle.daemon import change_publisher
    from tgdaemon.stream import Hub

    if hasattr(Hub, "open"):
        return change_publisher(await Hub.open(store, queue_size=queue_size, replay_size=replay_size))
    return change_publisher(store, Hub(queue_size=queue_size, replay_size=replay_size))


# ---- dispatch of 80,000 setup tasks ----------------------------------------------------------------

async def dispatch(work: Path, url: str, media: dict[str, str], list_runs: int, pg_pid: int) -> dict[str, Any]:
    from tgdaemon.gateway.simulator import Simulator
    from tgdaemon.setup.tasks import required_tasks

    cfg = make_config(work, url, {"setup": {"media": media}})
    sim = Simulator(cfg.simulator)
    store = await open_store(url)
    try:
        await seed_accounts(store, sim)
        store.on_commit = await commit_hook(store, cfg.daemon.stream_queue_size, cfg.daemon.stream_replay_size)
        required = required_tasks(cfg.setup)
        gc.collect()
        cpu0, pg0 = time.process_time(), server_cpu(pg_pid)
        started = time.perf_counter()
        created, due = await store.dispatch_setup(required)
        first = time.perf_counter() - started
        cpu, pg = time.process_time() - cpu0, server_cpu(pg_pid) - pg0
        started = time.perf_counter()
        again, _ = await store.dispatch_setup(required)
        second = time.perf_counter() - started
        listing = []  # the store's listing of the 10,000 with their 80,000 setup tasks: what the API adds is apart
        for _ in range(list_runs):
            started = time.perf_counter()
            rows, _ = await store.list_accounts(limit=ACCOUNTS)
            listing.append(time.perf_counter() - started)
            if len(rows) != ACCOUNTS:
                raise RuntimeError(f"list_accounts gave {len(rows)} accounts, expected {ACCOUNTS}")
    finally:
        await store.close()
    if created != len(required) * ACCOUNTS or again:
        raise RuntimeError(f"dispatch created {created} then {again}, expected {len(required) * ACCOUNTS} then 0")
    return {"seconds": first, "created": created, "due": due, "again_seconds": second,
            "cpu": cpu, "server_cpu": pg, "list_seconds": listing}


# ---- generation for 10,000 quotas ------------------------------------------------------------------

async def generation(work: Path, url: str, rounds: int, pg_pid: int) -> dict[str, Any]:
    from tgdaemon.gateway.simulator import Simulator
    from tgdaemon.quotas.generator import Generator
    from tgdaemon.quotas.leases import Leases, utc_day
    from tgdaemon.quotas.probe import Probes
    from tgdaemon.store import Finish, LeaseAsk

    cfg = make_config(work, url, {"quotas": {"max_tasks_per_tick": ACCOUNTS, "pace_seconds": 0,
                                             "daily_cap": 1_000_000_000}})
    sim = Simulator(cfg.simulator)
    # The fixture: 30,000 small transactions, so without waiting for the disk on each (the timed part does).
    seeded = time.perf_counter()
    store = await open_store(url, "normal")
    try:
        await seed_accounts(store, sim)
        at = time.time()
        for i in range(ACCOUNTS):
            qid = await store.add_quota(name=f"q{i}", target="@tgfleet_news", action="post_stats", last_n_posts=5,
                                        quantity=1_000_000, orders=None, interval_seconds=0.001,
                                        expires_at=at + 86400)
            await store.record_inspection(qid, ok=True, peer_id=1_000_000 + i, title="News")
            await store.record_posts(qid, [5, 4, 3, 2, 1])
    finally:
        await store.close()
    seed_s = time.perf_counter() - seeded
    store = await open_store(url)
    out: dict[str, Any] = {"seconds": [], "tasks": [], "cpu": [], "server_cpu": [], "seed_seconds": seed_s}
    try:
        store.on_commit = await commit_hook(store, 20000, 50000)
        leases = Leases(cfg, store)
        gen = Generator(cfg, store, sim, Probes(cfg, store), leases)
        lock = leases.lock_seconds(cfg.quotas.lease_seconds)
        for _ in range(rounds):
            gc.collect()
            cpu0, pg0 = time.process_time(), server_cpu(pg_pid)
            started = time.perf_counter()
            made = await gen.tick()
            out["seconds"].append(time.perf_counter() - started)
            out["cpu"].append(time.process_time() - cpu0)
            out["server_cpu"].append(server_cpu(pg_pid) - pg0)
            out["tasks"].append(made.tasks)
            if made.tasks < ACCOUNTS * 0.99:
                raise RuntimeError(f"generation made {made.tasks} tasks, expected {ACCOUNTS}")
            # Between rounds, untimed: the local executor's part, every task leased and reported done, so
            # the accounts are free and the quotas (interval 1 ms) due again; the table keeps the history.
            [leased] = await store.lease_tasks([LeaseAsk("local", ACCOUNTS, cfg.quotas.lease_seconds, lock)])
            outcomes = await store.finish_tasks(
                [Finish("local", t["id"], t["lease_token"], ok=True, observation={"views": 100}) for t in leased],
                pace_seconds=0, day=utc_day(), retry_seconds=cfg.quotas.retry_seconds)
            if len(leased) != made.tasks or outcomes.count("applied") != len(leased):
                raise RuntimeError(f"reset: {len(leased)} leased of {made.tasks}, {outcomes.count('applied')} applied")
            await asyncio.sleep(0.01)  # past the quotas' 1 ms interval
    finally:
        await store.close()
    return out


# ---- the setup scheduler in a running daemon -------------------------------------------------------

async def scheduler(work: Path, url: str, media: dict[str, str], fast: int, media_q: int, window: float,
                    pg_pid: int, synchronous: str = "full") -> dict[str, Any]:
    from tgdaemon.gateway.simulator import Simulator
    from tgdaemon.setup.tasks import required_tasks

    cfg = make_config(work, url, {"setup": {
        "enabled": True, "dispatch_interval_seconds": 3600.0, "media": media,
        "queues": {"fast_concurrency": fast, "media_concurrency": media_q},
        "profile": {"first_name": "Bench", "last_name": "Fleet"}}, "store": {"synchronous": synchronous}})
    if not url.startswith("postgresql"):
        db = Path(url.removeprefix("sqlite://"))
        assert db == cfg.data_dir() / "tgfleet.sqlite3", (db, cfg.data_dir())
    store = await open_store(url)
    try:
        await seed_accounts(store, Simulator(cfg.simulator))
        total, _ = await store.dispatch_setup(required_tasks(cfg.setup))
    finally:
        await store.close()
    return await setup_window(cfg, total, window, pg_pid)


async def setup_window(cfg: Any, total: int, window: float, pg_pid: int, *, sample_s: float = 0.5,
                       on_sample: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """The real ``Daemon`` on ``cfg``'s fleet, whose ``total`` setup tasks are dispatched: from its first task
    running, the tasks done or failed every ``sample_s`` until all are or ``window`` s passed, and this
    process's CPU (and the PostgreSQL server's) over that time. ``on_sample(runtime)`` sees each sample."""
    from tgdaemon.gateway.simulator import Simulator
    from tgdaemon.lifecycle.daemon import Daemon

    daemon = Daemon(cfg, Simulator(cfg.simulator), install_signal_handlers=False)
    task = asyncio.create_task(daemon.run(), name="bench-daemon")
    samples: list[tuple[float, int]] = []
    try:
        ready = asyncio.create_task(daemon.ready.wait())
        done, _ = await asyncio.wait({task, ready}, timeout=120, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            if task in done:
                task.result()
            raise RuntimeError("the in-process daemon was not ready within 120 s")
        rt = daemon.runtime
        assert rt is not None
        store = rt.store
        waited = time.monotonic()
        while rt.setup.running() == 0 and time.monotonic() - waited < 30:  # the clock starts with the first task
            await asyncio.sleep(0.005)

        async def completed() -> tuple[int, int]:
            setup = (await store.task_counts())["setup"]
            return setup.get("done", 0) + setup.get("failed", 0), setup.get("failed", 0)

        base, _ = await completed()
        cpu0, pg0 = time.process_time(), server_cpu(pg_pid)
        t0 = time.monotonic()
        samples.append((0.0, 0))
        finished, failed = False, 0
        for _ in range(int(window / sample_s) + 2):
            await asyncio.sleep(sample_s)
            if on_sample is not None:
                on_sample(rt)
            count, failed = await completed()
            samples.append((time.monotonic() - t0, count - base))
            if count >= total:
                finished = True
                break
            if samples[-1][0] >= window:
                break
        cpu, pg = time.process_time() - cpu0, server_cpu(pg_pid) - pg0
    finally:
        daemon.stop()
        try:
            await asyncio.wait_for(task, 30)
        except TimeoutError:
            task.cancel()
    seconds, count = samples[-1]
    return {"seconds": seconds, "completed": count, "failed": failed, "total": total, "finished": finished,
            "cpu": cpu, "server_cpu": pg, "samples": samples}


# ---- the pull+report fixture: already-inspected quotas, added to a running daemon's store -------------

async def seed_quotas(url: str, count: int) -> dict[str, Any]:
    """``channel_stats`` quotas due at every tick (interval 1 ms: the API's 1 s minimum guards operators; here
    each quota must be due whenever its account is free), inspected; through the store, beside the daemon."""
    started = time.perf_counter()
    store = await open_store(url, "normal")
    try:
        at = time.time()
        for i in range(count):
            qid = await store.add_quota(name=f"b{i}", target="@tgfleet_markets", action="channel_stats",
                                        last_n_posts=0, quantity=None, orders=1_000_000_000, interval_seconds=0.001,
                                        expires_at=at + 86400)
            await store.record_inspection(qid, ok=True, peer_id=2_000_000 + i, title="Markets")
    finally:
        await store.close()
    return {"seconds": time.perf_counter() - started}


JOBS = {"dispatch": dispatch, "generation": generation, "scheduler": scheduler, "seed-quotas": seed_quotas}


def main() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    job, args = sys.argv[2], json.loads(sys.argv[3])
    if "work" in args:
        args["work"] = Path(args["work"])
    result = asyncio.run(JOBS[job](**args))
    result["code"] = "new" if new_code() else "old"
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
