"""``tgdaemon backup`` on a large database: how long the copy takes, and what the writer and a listing feel.

In this process, the daemon's own ``Store``: a fresh database with 50,000
accounts (with sessions) and 1,000,000 events (about what a 50,000-account
fleet's setup writes). ``Store.backup`` copies it three times; meanwhile a
writer commits one small transaction after another (an event, as a report's
transaction writes one) and a reader lists 1,000 accounts in a loop. The same
writer and reader run for the same length of time with no backup, side by
side, so the cost of the backup is the difference.
"""

from __future__ import annotations

import asyncio
import os
import time

from bench._common import scratch_dir
from bench.report import Result, median, percentile
from tgdaemon.store import Store
from tgdaemon.store.sqlite import SQLiteStore

TITLE = "Online backup of a large database"
ACCOUNTS = int(os.environ.get("BENCH_BACKUP_ACCOUNTS", "50000"))
EVENTS = int(os.environ.get("BENCH_BACKUP_EVENTS", "1000000"))
COPIES = 3
COPY_TARGET_S = 10.0
WRITE_P99_TARGET_MS = 50.0

ABOUT = f"""\
In process, the daemon's own `Store` on a fresh SQLite file with {ACCOUNTS:,} accounts (each with a
session row) and {EVENTS:,} events. `Store.backup` (SQLite's backup API in one step, on its own
connection and thread) copies it {COPIES} times, to a new file each time. During each copy a writer
commits one small transaction after another (one event, through `Store.tx`, as a report does) and
a reader lists 1,000 accounts in a loop; the same writer and reader also run alone for as long, and
the two are shown side by side. Targets: a copy under {COPY_TARGET_S:.0f} s, and the writer's 99th
percentile commit under {WRITE_P99_TARGET_MS:.0f} ms while a copy runs."""

_notes: list[str] = []


def notes() -> list[str]:
    return list(_notes)


async def _fill(store: Store) -> None:
    async with store.tx() as tx:
        await store.insert_accounts(tx, ({"phone": f"+1555{i:07d}", "tg_user_id": 10**9 + i, "label": f"b-{i:05d}",
                                          "is_probe": 0, "profile_json": "{}"} for i in range(ACCOUNTS)))
        await tx.conn.executemany(
            "INSERT INTO sessions (account_id, dc_id, server, port, auth_key, updated_at)"
            " SELECT id, 2, '149.154.167.51', 443, randomblob(256), 0 FROM accounts WHERE id = ?",
            [(i + 1,) for i in range(ACCOUNTS)])
    batch = 50_000
    for start in range(0, EVENTS, batch):
        async with store.tx() as tx:
            await tx.conn.executemany(
                "INSERT INTO events (at, kind, account_id, message, data_json) VALUES (?, ?, ?, ?, ?)",
                [(1.7e9 + i, "setup.done", i % ACCOUNTS + 1, "update_name done", '{"attempt":1}')
                 for i in range(start, min(start + batch, EVENTS))])


async def _traffic(store: Store, stop: asyncio.Event) -> tuple[list[float], list[float]]:
    """Commit and list until ``stop``; (commit times, listing times) in seconds."""
    commits: list[float] = []
    listings: list[float] = []

    async def write() -> None:
        for _ in range(10_000_000):
            if stop.is_set():
                return
            t = time.perf_counter()
            async with store.tx() as tx:
                await tx.event("bench.write", "a write during the backup")
            commits.append(time.perf_counter() - t)

    async def read() -> None:
        for _ in range(10_000_000):
            if stop.is_set():
                return
            t = time.perf_counter()
            await store.list_accounts(limit=1000)
            listings.append(time.perf_counter() - t)

    await asyncio.gather(write(), read())
    return commits, listings


async def _alone(store: Store, seconds: float) -> tuple[list[float], list[float]]:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    return await _traffic(store, stop)


async def run() -> list[Result]:
    _notes.clear()
    with scratch_dir("tgbench-backup-") as work:
        store = await SQLiteStore.open(work / "data" / "tgfleet.sqlite3")
        try:
            t = time.perf_counter()
            await _fill(store)
            fill_s = time.perf_counter() - t
            copies: list[float] = []
            during: tuple[list[float], list[float]] = ([], [])
            size = 0
            for i in range(COPIES):
                stop = asyncio.Event()
                traffic = asyncio.create_task(_traffic(store, stop))
                await asyncio.sleep(0.2)
                t = time.perf_counter()
                size = await store.backup(work / f"copy{i}.sqlite3")
                copies.append(time.perf_counter() - t)
                stop.set()
                commits, listings = await traffic
                during[0].extend(commits)
                during[1].extend(listings)
                (work / f"copy{i}.sqlite3").unlink()
            alone = await _alone(store, sum(copies) + 0.2 * COPIES)
        finally:
            await store.close()
    _notes.append(f"database {size / 1e6:.0f} MB ({ACCOUNTS:,} accounts, {EVENTS:,} events), built in {fill_s:.1f} s;"
                  f" {len(during[0]):,} commits and {len(during[1]):,} listings during the copies,"
                  f" {len(alone[0]):,} and {len(alone[1]):,} in as long without")
    copy_s = median(copies)
    ms = 1000.0
    return [
        Result("copy (median of 3)", round(copy_s, 2), "s", target=COPY_TARGET_S),
        Result("copy rate", round(size / 1e6 / copy_s), "MB/s", lower_is_better=False),
        Result("write commit p50, during a copy / alone",
               f"{percentile(during[0], 50) * ms:.2f} / {percentile(alone[0], 50) * ms:.2f} ms"),
        Result("write commit p99 during a copy", round(percentile(during[0], 99) * ms, 2), "ms",
               target=WRITE_P99_TARGET_MS),
        Result("write commit p99 alone", round(percentile(alone[0], 99) * ms, 2), "ms"),
        Result("write commit max, during a copy / alone",
               f"{max(during[0]) * ms:.1f} / {max(alone[0]) * ms:.1f} ms"),
        Result("commits per second, during a copy / alone",
               f"{len(during[0]) / sum(copies):.0f} / {len(alone[0]) / (sum(copies) + 0.2 * COPIES):.0f}"),
        Result("listing 1,000 accounts p50, during a copy / alone",
               f"{percentile(during[1], 50) * ms:.1f} / {percentile(alone[1], 50) * ms:.1f} ms"),
    ]
