"""A long-running fleet's history: status, listing and export with millions of rows, and pruning it.

A data dir is seeded by a real ``tgdaemon run --simulate --accounts 10000``,
stopped, and then given a history written directly with sqlite3 (no daemon
running): 5,000,000 events over 33 days, 2,000,000 finished pulled tasks over
16 days, a 300,000-row quota to export, 20 days of usage, 8 setup tasks per
account. Then a real daemon subprocess is started on it twice:

1. with retention off, timed through the control socket as the CLI and the
   dashboard use it: ``status``, listing 10,000 accounts, the quota list, the
   export (JSON and CSV) and a ``/metrics`` scrape;
2. with the default retention, whose first round starts at once on the old
   part of that history: how much it pruned, how long the round took, the
   longest any one batch held the writer, and status and a write (disable +
   enable) timed while it runs.

Also, on copies with sqlite3 and no daemon: what the counting that the
counters replaced costs on this database, and what the counter triggers cost
per row written.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from bench._common import (
    DaemonProc,
    Notes,
    Timings,
    daemon_subprocess,
    rss_mb,
    scratch_dir,
    timed_runs,
)
from bench.report import Result, median, percentile

TITLE = "History: status, listing and export with millions of rows, and pruning them"
EVENTS = int(os.environ.get("BENCH_HISTORY_EVENTS", "5000000"))
TASKS = int(os.environ.get("BENCH_HISTORY_TASKS", "2000000"))
ACCOUNTS = 10_000
QUOTAS = 200  # post_stats; the first half live, the second half expired
POSTS = 20  # post ids in the tasks; the live quotas' snapshots hold the first 10
EXPORT_ROWS = 300_000
USAGE_DAYS = 20
EVENT_DAYS = 33.0
TASK_DAYS = 16.0
STATUS_TARGET_MS = 50.0
LIST_TARGET_MS = 300.0
EXPORT_TARGET = 50_000.0
BATCH_TARGET_MS = 10.0
PRUNE_WAIT_S = 240.0
DAY = 86400.0
SETUP_TYPES = ("ensure_2fa", "update_name", "privacy_phone_hidden", "privacy_last_seen_everybody",
               "set_photo_jpg", "set_photo_gif", "story_image", "story_video")
RETENTION_OFF = "[retention]\nevents_days = 0\nfinished_tasks_days = 0\n"

ABOUT = f"""\
Issue 10 item 8. A data dir seeded by `tgdaemon run --simulate --accounts {ACCOUNTS:,}`, then, with no
daemon running, given a history written with sqlite3: {EVENTS:,} events spread over {EVENT_DAYS:.0f} days,
{TASKS:,} finished pulled tasks (9 in 10 done) of {QUOTAS} `post_stats` quotas spread over {TASK_DAYS:.0f}
days (half the quotas live, half expired; each (quota, post, account) once), {EXPORT_ROWS:,}
measurements of one quota, {USAGE_DAYS} days of usage for every account and 8 setup tasks per account.
All quotas are paused, so the daemon adds no work of its own. A real daemon subprocess is then
started on it. *Retention off*: times end to end through the control socket (`tgdaemon.control.client.ControlClient`,
one untimed warm-up call): `status` (target under {STATUS_TARGET_MS:.0f} ms), one listing of all
{ACCOUNTS:,} accounts (target under {LIST_TARGET_MS:.0f} ms), the export
`GET /v1/quotas/ID/measurements` read to its end (target at least {EXPORT_TARGET:,.0f} rows/s).
*Default retention* (events 30 days, finished tasks 14 days, batches of 1,000): the first round starts
with the daemon; reported are what it pruned, its length, the longest single batch's hold of the
writer (target under {BATCH_TARGET_MS:.0f} ms: "a few milliseconds"), and status and a write timed while it
runs. The clients run on the same 2 cores as the daemon."""

_notes = Notes()


def notes() -> list[str]:
    return list(_notes)



async def run() -> list[Result]:
    from tgdaemon.lifecycle.datadir import DB_NAME

    _notes.clear()
    out: list[Result] = []
    with scratch_dir("tgbench-hist-") as work:
        async with daemon_subprocess(work, accounts=ACCOUNTS, config=RETENTION_OFF):
            pass  # seeds the fleet and the schema
        db = work / "data" / DB_NAME
        started = time.monotonic()
        built = build_history(db)
        out.append(Result("fixture: written with sqlite3", round(time.monotonic() - started, 1), "s",
                          note=f"{built['events']:,} events, {built['tasks']:,} tasks, {built['measurements']:,}"
                          f" measurements; database {built['mib']:,.0f} MiB"))
        out += what_if(db, work / "what-if.sqlite3")
        async with daemon_subprocess(work, accounts=ACCOUNTS, config=RETENTION_OFF, stop_grace=10) as daemon:
            out += await retention_off(daemon)
        async with daemon_subprocess(work, accounts=ACCOUNTS, stop_grace=10) as daemon:
            out += await retention_on(daemon, built)
        out += trigger_cost(work / "triggers.sqlite3")
    return out


# ---- the fixture ------------------------------------------------------------------------------------

def build_history(db: Path) -> dict[str, Any]:
    """The history, bulk-written while no daemon runs. The counter triggers and the indexes of events
    and tasks are set aside while it is written and made again at the end (an index built by one sort
    costs a fraction of millions of random inserts into it), the counters computed once."""
    now = time.time()
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        triggers = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
        indexes = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
                               " AND tbl_name IN ('events', 'tasks')").fetchall()
        conn.execute("BEGIN")
        for name, _ in triggers:
            conn.execute(f"DROP TRIGGER {name}")
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        # The daemon's own events (the fleet seeded) came first: they are the oldest of the history.
        conn.execute("UPDATE events SET at = ?", (now - EVENT_DAYS * DAY - 60,))
        live_posts = "[" + ",".join(str(p) for p in range(1, 11)) + "]"
        conn.executemany(
            "INSERT INTO quotas (id, name, target, action, last_n_posts, quantity_total, orders_left,"
            " interval_seconds, expires_at, paused, inspection_ok, posts_fetched_at, posts_json, created_at)"
            " VALUES (?, ?, '@tgfleet_news', 'post_stats', 10, 1000000, 1000000, 60, ?, 1, 1, ?, ?, ?)",
            [(q, f"h{q}", now + 30 * DAY if q <= QUOTAS // 2 else now - DAY, now, live_posts, now - 20 * DAY)
             for q in range(1, QUOTAS + 1)])
        kinds = ("setup.done", "setup.retry", "account.cooldown", "task.failed")
        step = EVENT_DAYS * DAY / EVENTS
        conn.executemany(
            "INSERT INTO events (at, kind, account_id, task_id, message, data_json) VALUES (?, ?, ?, ?, ?, ?)",
            ((now - EVENT_DAYS * DAY + i * step, kinds[i % 4], i % ACCOUNTS + 1, i,
              f"setup task {i} {kinds[i % 4].split('.')[1]}: update_name", '{"task":"update_name","attempt":1}')
             for i in range(EVENTS)))
        tstep = TASK_DAYS * DAY / TASKS
        conn.executemany(  # task i: quota, post and account from i, so each (quota, post, account) once
            "INSERT INTO tasks (subject_type, subject_id, account_id, action, target, post_id, status, lease_count,"
            " result_json, error_code, created_at, reported_at)"
            " VALUES ('quota', ?, ?, 'post_stats', '@tgfleet_news', ?, ?, 1, ?, ?, ?, ?)",
            ((i % QUOTAS + 1, (i // (QUOTAS * POSTS)) % ACCOUNTS + 1, (i // QUOTAS) % POSTS + 1,
              "failed" if i % 10 == 9 else "done",
              '{}' if i % 10 == 9 else '{"views":1234,"forwards":5,"replies":2,"reactions":40}',
              "RPC_CALL_FAIL" if i % 10 == 9 else None, now - TASK_DAYS * DAY + i * tstep,
              now - TASK_DAYS * DAY + i * tstep + 5) for i in range(TASKS)))
        mstep = 14 * DAY / EXPORT_ROWS
        conn.executemany(
            "INSERT INTO measurements (quota_id, task_id, post_id, observed_at, views, forwards, replies, reactions)"
            " VALUES (1, ?, ?, ?, ?, 5, 2, 40)",
            ((i, i % 10 + 1, now - 14 * DAY + i * mstep, 1000 + i) for i in range(EXPORT_ROWS)))
        conn.executemany(
            "INSERT INTO usage (account_id, day, used) VALUES (?, ?, 7)",
            ((a, time.strftime("%Y-%m-%d", time.gmtime(now - d * DAY)), ) for d in range(USAGE_DAYS)
             for a in range(1, ACCOUNTS + 1)))
        conn.executemany(
            "INSERT OR IGNORE INTO account_tasks (account_id, task_type, status, attempts, created_at, updated_at)"
            " VALUES (?, ?, ?, 1, ?, ?)",
            ((a, t, "done" if (a + k) % 4 else "retry", now, now) for a in range(1, ACCOUNTS + 1)
             for k, t in enumerate(SETUP_TYPES)))
        conn.execute("UPDATE quotas SET measurements_count ="
                     " (SELECT COUNT(*) FROM measurements m WHERE m.quota_id = quotas.id)")
        conn.execute("UPDATE row_counts SET n = (SELECT COUNT(*) FROM events) WHERE name = 'events'")
        for table in ("tasks", "account_tasks"):
            conn.execute(f"UPDATE row_counts SET n = 0 WHERE name LIKE '{table}.%'")
            conn.execute(f"UPDATE row_counts SET n = c.n FROM (SELECT '{table}.' || status AS name, COUNT(*) AS n"
                         f" FROM {table} GROUP BY status) c WHERE row_counts.name = c.name")
        for _, sql in triggers + indexes:
            conn.execute(sql)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        counts = dict(conn.execute("SELECT name, n FROM row_counts").fetchall())
        kept = conn.execute(  # what the default retention must keep of the old tasks: live, in snapshot, done
            "SELECT COUNT(*) FROM tasks WHERE reported_at < ? AND status = 'done' AND subject_id <= ?"
            " AND post_id <= 10", (now - 14 * DAY, QUOTAS // 2)).fetchone()[0]
    finally:
        conn.close()
    return {"events": counts["events"], "tasks": sum(n for k, n in counts.items() if k.startswith("tasks.")),
            "measurements": EXPORT_ROWS, "mib": db.stat().st_size / 2**20, "old_tasks_kept": kept, "built_at": now}


def what_if(db: Path, copy: Path) -> list[Result]:
    """What status and the quota view would cost counting rows, as before the counters (sqlite3, a copy)."""
    shutil.copyfile(db, copy)
    conn = sqlite3.connect(copy, isolation_level=None)
    out: list[Result] = []
    try:
        for label, sql in (
            ("COUNT(*) over events", "SELECT COUNT(*) FROM events"),
            ("task counts by GROUP BY status (the old task_counts)",
             "SELECT status, COUNT(*) FROM tasks GROUP BY status"),
            ("the old quota view (COUNT(*) of measurements per quota), all quotas",
             "SELECT q.id, (SELECT COUNT(*) FROM measurements m WHERE m.quota_id = q.id) FROM quotas q"),
            ("the counters instead (row_counts and SUM(measurements_count))",
             "SELECT (SELECT SUM(n) FROM row_counts), (SELECT SUM(measurements_count) FROM quotas)"),
        ):
            conn.execute(sql).fetchall()  # warm
            started = time.perf_counter()
            conn.execute(sql).fetchall()
            out.append(Result(f"what if: {label}", round((time.perf_counter() - started) * 1000, 1), "ms",
                              note="sqlite3 on a copy, no daemon, warm cache"))
    finally:
        conn.close()
        copy.unlink(missing_ok=True)
    return out


# ---- retention off: the readers ---------------------------------------------------------------------

async def retention_off(daemon: DaemonProc) -> list[Result]:
    from tgdaemon.control.client import ControlClient

    out: list[Result] = []
    async with ControlClient(daemon.socket, timeout=60) as client:
        t = await timed_runs(client.status, runs=30, budget_s=15, timeout_s=10)
        out += _stats("retention off: `status`", t, STATUS_TARGET_MS)
        db = t.last["database"] if t.last else {}
        _notes.add(f"Status showed: database {db.get('file_bytes', 0) / 2**20:,.0f} MiB + WAL "
              f"{db.get('wal_bytes', 0) / 2**20:,.1f} MiB; rows " + ", ".join(
                  f"{k} {v:,}" for k, v in db.get("rows", {}).items()) + ".")
        t = await timed_runs(lambda: client.accounts(limit=ACCOUNTS), runs=10, budget_s=20, timeout_s=10)
        out += _stats("retention off: one listing of all 10,000 accounts", t, LIST_TARGET_MS)
        t = await timed_runs(lambda: client.request("GET", "/quotas"), runs=10, budget_s=10, timeout_s=10)
        out += _stats(f"retention off: the quota list ({QUOTAS} quotas)", t, None)
        http = (await client.status())["http"]
    connector = aiohttp.UnixConnector(path=str(daemon.socket))
    async with aiohttp.ClientSession(connector=connector) as session:
        for fmt in ("json", "csv"):
            out += await _export(session, daemon, fmt)
    async with aiohttp.ClientSession() as session:
        async def scrape() -> bytes:
            async with session.get(f"http://{http}/metrics") as resp:
                return await resp.read()
        t = await timed_runs(scrape, runs=10, budget_s=10, timeout_s=10)
        out += _stats("retention off: a `/metrics` scrape", t, None)
    return out


async def _export(session: aiohttp.ClientSession, daemon: DaemonProc, fmt: str) -> list[Result]:
    rss_before = rss_mb(daemon.pid)
    peak = rss_before
    started = time.perf_counter()
    async with session.get("http://tgdaemon/v1/quotas/1/measurements", params={"format": fmt},
                           timeout=aiohttp.ClientTimeout(total=300)) as resp:
        if resp.status != 200:
            raise RuntimeError(f"export {fmt}: HTTP {resp.status}")
        chunks = []
        async for chunk in resp.content.iter_chunked(1 << 16):
            chunks.append(chunk)
            if len(chunks) % 64 == 0:
                peak = max(peak, rss_mb(daemon.pid))
    seconds = time.perf_counter() - started
    body = b"".join(chunks)
    rows = body.count(b"\n") - 1 if fmt == "csv" else len(msgspec.json.decode(body)["measurements"])
    if rows != EXPORT_ROWS:
        raise RuntimeError(f"export {fmt}: {rows} rows, expected {EXPORT_ROWS}")
    return [Result(f"retention off: export of {EXPORT_ROWS:,} measurements as {fmt.upper()}",
                   round(rows / seconds), "rows/s", EXPORT_TARGET, lower_is_better=False,
                   note=f"{seconds:.2f} s to the last byte; daemon RSS {rss_before:.0f} MiB before, "
                   f"{peak:.0f} MiB at most during")]


# ---- default retention: the first round ------------------------------------------------------------

async def retention_on(daemon: DaemonProc, built: dict[str, Any]) -> list[Result]:
    from tgdaemon.control.client import ControlClient

    status_ms: list[float] = []
    write_ms: list[float] = []
    last: dict[str, Any] | None = None
    async with ControlClient(daemon.socket, timeout=60) as client:
        async def writes() -> None:
            for _ in range(100_000):  # bounded; cancelled when the round ends
                started = time.perf_counter()
                await client.disable(2, "bench: a write while pruning")
                await client.enable(2)
                write_ms.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(0.05)

        await client.status()  # untimed, as in every other series: the first call opens the connection
        writer = asyncio.create_task(writes())
        deadline = time.monotonic() + PRUNE_WAIT_S
        try:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                status = await client.status()
                status_ms.append((time.perf_counter() - started) * 1000)
                if (last := status["retention"]["last_run"]) is not None:
                    break
                await asyncio.sleep(0.2)
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        rows = (await client.status())["database"]["rows"]
    if last is None:
        _notes.add(f"The first retention round did not end within {PRUNE_WAIT_S:.0f} s.")
        return [Result("default retention: first round", PRUNE_WAIT_S, "s", at_least=True)]
    expected_tasks_left = built["tasks"] - last["tasks"]
    _notes.add("A batch's hold of the writer includes its COMMIT, and SQLite checkpoints the WAL inside the "
          "COMMIT that takes it past 1,000 pages (copying it into the database file and syncing): with "
          "pruning writing about half a page of WAL per row deleted, that is one batch in every 10 or so, "
          "and it makes the tail (p99, longest) of the holds. Measured apart on a copy of this kind of "
          "database (200 batches of 250 events): p90 7 to 9 ms and longest 78 to 94 ms with the automatic "
          "checkpoint, p90 2 to 4 ms and longest 10 to 16 ms with checkpoints run on another connection. "
          "Any other writer whose commit lands on the threshold pays the same. Running checkpoints on "
          "another connection does not remove that hold, it moves it: a passive checkpoint beside the "
          "writer alone never catches up under steady commits (the WAL grew to 94 MB in 200 batches), "
          "and the short checkpoint under the write lock that lets the WAL restart held it 7 to 18 ms "
          "(60 ms at worst) in the same run, so tgdaemon leaves checkpoints to SQLite.")
    _notes.add(f"The first round pruned {last['events']:,} events, {last['tasks']:,} finished tasks and "
          f"{last['usage']:,} usage rows in {last['batches']:,} batches; it kept the {built['old_tasks_kept']:,} "
          f"old done tasks that live quotas still need (post in the snapshot). Rows left: events "
          f"{rows['events']:,}, tasks {rows['tasks']:,} (expected {expected_tasks_left:,}).")
    out = [
        Result("default retention: first round, rows pruned", last["events"] + last["tasks"] + last["usage"],
               "rows", note=f"{last['events']:,} events, {last['tasks']:,} tasks, {last['usage']:,} usage rows"),
        Result("default retention: first round, length", last["seconds"], "s",
               note=f"{last['batches']:,} batches, each followed by a pause as long as it held the writer"),
        Result("default retention: one batch's hold of the writer, median", last["median_batch_ms"], "ms",
               BATCH_TARGET_MS, note="a batch is its own transaction, commit included; its size adapts "
               "(at most 1,000 rows) to keep this near 4 ms"),
        Result("default retention: one batch's hold of the writer, p99", last["p99_batch_ms"], "ms",
               BATCH_TARGET_MS),
        Result("default retention: the longest one batch held the writer", last["longest_batch_ms"], "ms",
               BATCH_TARGET_MS, note="the worst of the round: on 2 shared cores, a batch descheduled mid-commit"),
    ]
    if status_ms:
        out.append(Result("default retention: `status` while pruning, p95", round(percentile(status_ms, 95), 1),
                          "ms", STATUS_TARGET_MS, note=f"{len(status_ms)} calls, median {median(status_ms):.1f} ms"))
    if write_ms:
        out.append(Result("default retention: disable + enable (2 commits) while pruning, p95",
                          round(percentile(write_ms, 95), 1), "ms",
                          note=f"{len(write_ms)} pairs, median {median(write_ms):.1f} ms, max {max(write_ms):.1f} ms"))
    return out


# ---- what the counter triggers cost the writers ----------------------------------------------------

def trigger_cost(path: Path) -> list[Result]:
    """µs per event inserted and per task status changed, with and without the counter triggers."""
    from tgdaemon.store import migrate

    n = 100_000
    out: list[Result] = []
    migrate.upgrade(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("INSERT INTO accounts (id, created_at) VALUES (1, 0)")
        triggers = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
        per: dict[str, list[float]] = {"events": [], "tasks": []}
        for with_triggers in (True, False):  # the best of 3 each: other processes share these 2 cores
            if not with_triggers:
                for name, _ in triggers:
                    conn.execute(f"DROP TRIGGER {name}")
            best = {"events": float("inf"), "tasks": float("inf")}
            for _ in range(3):
                conn.execute("DELETE FROM events")
                conn.execute("DELETE FROM tasks")
                started = time.perf_counter()
                conn.execute("BEGIN")
                conn.executemany("INSERT INTO events (at, kind, account_id, message) VALUES (?, 'k', 1, 'm')",
                                 ((float(i),) for i in range(n)))
                conn.execute("COMMIT")
                best["events"] = min(best["events"], (time.perf_counter() - started) / n * 1e6)
                conn.execute("BEGIN")
                conn.executemany("INSERT INTO tasks (id, subject_type, subject_id, account_id, action, target,"
                                 " status, created_at) VALUES (?, 'quota', 1, 1, 'post_stats', '@x', 'pending', 0)",
                                 ((i,) for i in range(1, n + 1)))
                conn.execute("COMMIT")
                started = time.perf_counter()
                conn.execute("BEGIN")
                conn.executemany("UPDATE tasks SET status = 'done' WHERE id = ?", ((i,) for i in range(1, n + 1)))
                conn.execute("COMMIT")
                best["tasks"] = min(best["tasks"], (time.perf_counter() - started) / n * 1e6)
            for what in per:
                per[what].append(best[what])
        for what, label in (("events", "an event inserted"), ("tasks", "a task's status changed")):
            with_t, without = per[what]
            out.append(Result(f"counter triggers: cost of {label}", round(with_t - without, 2), "µs",
                              note=f"{with_t:.2f} µs with, {without:.2f} µs without; sqlite3, {n:,} rows"
                              " in one transaction, best of 3"))
    finally:
        conn.close()
    return out


def _stats(name: str, t: Timings, target: float | None) -> list[Result]:
    if not t.ms:
        return [Result(name, t.limit_ms, "ms", target, at_least=True, note="did not answer within the limit")]
    return [Result(f"{name}: median", round(median(t.ms), 1), "ms", target, note=f"median of {len(t.ms)}"),
            Result(f"{name}: p95", round(percentile(t.ms, 95), 1), "ms", target,
                   note=f"{len(t.ms)} runs, max {max(t.ms):.1f} ms")]


if __name__ == "__main__":
    for r in asyncio.run(run()):
        print(r.name, r.shown_value(), r.verdict())
