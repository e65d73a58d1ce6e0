"""Listing accounts through the control API: 10,000 (target: under 300 ms), and 100,000 while the setup
scheduler runs (issue 13: under 1 s, the CLI included; bench/_listing_fleet.py).

A real daemon (``python -m tgdaemon run --simulate --accounts 10000``) runs in
its own process, so the client's JSON decoding and the server's query and
encoding do not share one event loop; the client is ``tgdaemon.control.client.ControlClient``
over the Unix socket, exactly as the dashboard lists accounts. Times are end to
end as the client sees them: request, SQL, encoding, transfer, decoding.

Two fleets:

* **seeded**: the simulator's 10,000 accounts, 500 of them disabled through the
  API (so a state filter has something to select). No setup tasks yet.
* **with setup tasks**: the same data dir after a fixture adds what the setup
  pipeline (design §4) will create: 8 ``account_tasks`` rows per account, about
  3 in 4 ``done``, and 5 % of accounts busy (lock held), 15 % in cooldown. The
  fixture writes with sqlite3 while the daemon is stopped, then the daemon is
  started again on the same data dir.
* **100,000 while setup runs** (``BENCH_LIST_BIG_ACCOUNTS``): bench/_listing_fleet.py.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import msgspec

from bench._common import (
    DaemonProc,
    Notes,
    Timings,
    daemon_subprocess,
    scratch_dir,
    timed_runs,
)
from bench._listing_fleet import BEFORE_COMMIT, BIG, big_fleet
from bench._listing_fleet import RUNS as BIG_RUNS
from bench._listing_fleet import TARGET_S as BIG_TARGET_S
from bench.report import Result, median, percentile

TITLE = "Listing accounts through the control API: 10,000, and 100,000 while setup runs"
TARGET_MS = 300.0
ACCOUNTS = 10_000
DISABLED = 500
SETUP_TYPES = ("ensure_2fa", "update_name", "privacy_phone_hidden", "privacy_last_seen_everybody",
               "set_photo_jpg", "set_photo_gif", "story_image", "story_video")

ABOUT = f"""\
A real daemon (`python -m tgdaemon run --simulate --accounts {ACCOUNTS:,}`) in its own process; the
client is `tgdaemon.control.client.ControlClient` over the Unix socket, as the dashboard uses it. Times are
end to end as the client sees them (request, SQL, JSON encoding, transfer, decoding), after one
untimed warm-up call. Target: any listing of all {ACCOUNTS:,} accounts under {TARGET_MS:.0f} ms
(a filtered or searched listing too).

*Seeded fleet*: the simulator's {ACCOUNTS:,} accounts, {DISABLED} disabled through the API, no setup
tasks yet. *Fleet with setup tasks*: the same data dir after a fixture (written with sqlite3 while
the daemon is stopped) adds what the setup pipeline of design §4 will create: 8 `account_tasks`
rows per account (about 3 in 4 `done`), 5 % of accounts busy (lock held), 15 % in cooldown.

*{BIG:,} accounts while setup runs* (issue 13 item 5, target: under {BIG_TARGET_S:.0f} s end to end): a
daemon subprocess `tgdaemon run --simulate --accounts {BIG:,}` with `[setup]` enabled and all four media
files (8 tasks per account), every other setting its default (simulator latency, queues, the node
heartbeat); once its tasks run, `tgdaemon accounts list` (and `--json`) run as subprocesses with stdout a
pipe, {BIG_RUNS} times each, and the control API is paged by `limit=5000` and `limit=20000` (the CLI's
pages) and asked for one page of 20,000. Wall times are what the operator waits, the CLI's start-up
included; CPU is the CLI's (its rusage) and the daemon's (/proc), the daemon's less what setup burns in
as long (measured over 5 s before, while nobody lists). Then, on a copy of that database in the bench's
process, one listing of the whole fleet piece by piece, before and after. The *before* rows are the tree
this work started from ({BEFORE_COMMIT}, run from a `git archive`) on a fleet of its own, measured in the
same run (its table is not run: rich prints it for minutes, see the piece-by-piece row). The *what if*
rows restart this tree's daemon on the same data dir with the node heartbeat every 30 s instead of 2
(`BENCH_LIST_WHAT_IF_HEARTBEAT=0` leaves them out), to show what else holds the event loop."""

_notes = Notes()


async def run() -> list[Result]:
    _notes.clear()
    results: list[Result] = []
    with scratch_dir("tgbench-list-") as work:
        async with daemon_subprocess(work, accounts=ACCOUNTS) as daemon:
            results += await _seeded(daemon)
        from tgdaemon.lifecycle.datadir import DB_NAME

        db = work / "data" / DB_NAME
        try:
            fixture = _add_setup_tasks(db)
        except (sqlite3.Error, OSError) as exc:
            _notes.add(f"The fleet-with-setup-tasks part was skipped: the fixture failed: {exc}.")
            return results
        results += _view_sql_what_if(db, work / "what-if.sqlite3")
        # A listing that overruns its limit leaves the daemon's reader thread busy; do not wait for it.
        async with daemon_subprocess(work, accounts=ACCOUNTS, stop_grace=3.0) as daemon:
            results += await _loaded(daemon, fixture)
        if BIG:
            from bench.setup_pipeline import make_media

            big, notes = await big_fleet(work, make_media(work / "media"))
            results += big
            for note in notes:
                _notes.add(note)
    return results


def notes() -> list[str]:
    return list(_notes)



# ---- the seeded fleet -----------------------------------------------------------------------------

async def _seeded(daemon: DaemonProc) -> list[Result]:
    from tgdaemon.control.client import ControlClient

    out: list[Result] = []
    async with ControlClient(daemon.socket, timeout=60) as client:
        for account_id in range(1, ACCOUNTS + 1, ACCOUNTS // DISABLED):  # 500 requests, bounded
            await client.disable(account_id, "bench: state filter fixture")

        t = await timed_runs(lambda: client.accounts(limit=ACCOUNTS), runs=20, budget_s=20, timeout_s=10)
        rows = len(t.last["accounts"]) if t.last else 0
        size_kb = len(msgspec.json.encode(t.last)) / 1024 if t.last else 0
        out += _stats("seeded: one request, `limit=10000`", t, rows, p95=True)
        out.append(Result("seeded: response body of that request", round(size_kb), "KiB"))

        for page in (1000, 5000):
            t = await timed_runs(lambda page=page: client.all_accounts(page=page), runs=10, budget_s=15,
                                 timeout_s=10)
            out += _stats(f"seeded: all 10,000 in pages of {page:,} ({ACCOUNTS // page} requests), total",
                          t, len(t.last or []))
        t = await timed_runs(lambda: client.all_accounts(page=1000, sort="state"), runs=5, budget_s=15,
                             timeout_s=10)
        out += _stats("seeded: all 10,000 in pages of 1,000 sorted by state, total", t, len(t.last or []))

        for label, params in (
            ("state filter `state=disabled`", {"state": "disabled"}),
            ("state filter `state=ready`", {"state": "ready"}),
            ("text search `q=sim-004` (selective)", {"q": "sim-004"}),
            ("text search `q=7` (broad)", {"q": "7"}),
        ):
            t = await timed_runs(lambda params=params: client.accounts(limit=ACCOUNTS, **params), runs=10,
                                 budget_s=10, timeout_s=10)
            out += _stats(f"seeded: {label}, `limit=10000`", t, len(t.last["accounts"]) if t.last else 0)

        t = await timed_runs(lambda: _disable_enable(client, 2), runs=20, budget_s=10, timeout_s=10)
        out += _stats("seeded: disable + enable one account (2 requests, 2 commits)", t, None, target=None)
    return out


async def _disable_enable(client: Any, account_id: int) -> None:
    await client.disable(account_id, "bench")
    await client.enable(account_id)


# ---- the fleet with setup tasks ---------------------------------------------------------------------

def _add_setup_tasks(db: Path) -> dict[str, int]:
    """What the setup pipeline will have written for 10,000 accounts; run while the daemon is stopped."""
    rnd = random.Random(9)
    now = time.time()
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        ids = [r[0] for r in conn.execute("SELECT id FROM accounts ORDER BY id")]
        statuses = ["done"] * 6 + ["pending", "retry"]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT OR IGNORE INTO account_tasks (account_id, task_type, status, attempts, created_at, updated_at)"
            " VALUES (?, ?, ?, 1, ?, ?)",
            [(i, t, rnd.choice(statuses), now, now) for i in ids for t in SETUP_TYPES])
        busy = rnd.sample(ids, len(ids) // 20)
        conn.executemany("INSERT OR REPLACE INTO account_locks (account_id, holder, expires_at) VALUES (?, ?, ?)",
                         [(i, "bench", now + 6 * 3600) for i in busy])
        cooling = rnd.sample(ids, len(ids) * 15 // 100)
        conn.executemany("UPDATE accounts SET cooldown_until = ?, cooldown_reason = 'FLOOD_WAIT_60' WHERE id = ?",
                         [(now + 6 * 3600, i) for i in cooling])
        conn.execute("COMMIT")
        tasks = conn.execute("SELECT COUNT(*) FROM account_tasks").fetchone()[0]
        done = conn.execute("SELECT COUNT(*) FROM account_tasks WHERE status = 'done'").fetchone()[0]
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return {"tasks": tasks, "done": done, "busy": len(busy), "cooldown": len(cooling)}


def _view_sql_what_if(db: Path, copy: Path) -> list[Result]:
    """The account view's SQL alone (sqlite3, no daemon) on a copy of the fleet, as is and with an index.

    This is the diagnosis of a slow listing, not a listing: it shows SQLite's
    plan for the ``setup_done`` subquery and what an index on
    ``account_tasks (account_id, status)`` would change. Each query is cut off
    after 10 s by a progress handler.
    """
    try:
        from tgdaemon.store.sqlite.accounts import VIEW_SQL
    except ImportError as exc:
        _notes.add(f"The SQL what-if was skipped: {exc}.")
        return []
    out: list[Result] = []
    shutil.copyfile(db, copy)
    conn = sqlite3.connect(copy, isolation_level=None)
    try:
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + VIEW_SQL, {"now": time.time()})]
        _notes.add("SQLite's plan for the account view (`VIEW_SQL` in `tgdaemon/store/accounts.py`) on the fleet "
              "with setup tasks: " + "; ".join(f"`{step}`" for step in plan) + ".")
        for label, ddl in (("as shipped", None),
                           ("with an index on `account_tasks (account_id, status)`",
                            "CREATE INDEX bench_account_tasks_account_status ON account_tasks (account_id, status)")):
            if ddl:
                conn.execute(ddl)
            for limit in (100, ACCOUNTS):
                ms, done = _timed_sql(conn, f"{VIEW_SQL} ORDER BY a.id LIMIT {limit}", cutoff_s=10)
                out.append(Result(f"with setup tasks: the view's SQL alone, {label}, `LIMIT {limit}`",
                                  round(ms, 1), "ms", at_least=not done,
                                  note="sqlite3 on a copy of the data dir, no daemon: a diagnosis, not a listing"
                                  + ("" if done else "; cut off at 10 s")))
    finally:
        conn.close()
    return out


def _timed_sql(conn: sqlite3.Connection, sql: str, *, cutoff_s: float) -> tuple[float, bool]:
    deadline = time.monotonic() + cutoff_s
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    start = time.perf_counter()
    try:
        conn.execute(sql, {"now": time.time()}).fetchall()
        done = True
    except sqlite3.OperationalError:  # interrupted by the progress handler
        done = False
    finally:
        conn.set_progress_handler(None, 0)
    return (time.perf_counter() - start) * 1000, done


async def _loaded(daemon: DaemonProc, fixture: dict[str, int]) -> list[Result]:
    from tgdaemon.control.client import ControlClient

    out: list[Result] = []
    tag = "with setup tasks"
    _notes.add(f"Fixture for the fleet with setup tasks: {fixture['tasks']:,} `account_tasks` rows "
                  f"({fixture['done']:,} done), {fixture['busy']} accounts busy, {fixture['cooldown']:,} "
                  f"in cooldown.")
    async with ControlClient(daemon.socket, timeout=60) as client:
        t = await timed_runs(lambda: _disable_enable(client, 2), runs=10, budget_s=10, timeout_s=10)
        out += _stats(f"{tag}: disable + enable one account (2 requests, 2 commits)", t, None, target=None)

        t = await timed_runs(lambda: client.accounts(limit=100), runs=5, budget_s=10, timeout_s=10)
        out += _stats(f"{tag}: first page, `limit=100`", t, len(t.last["accounts"]) if t.last else 0,
                      target=None)

        # One call first, with a limit: if it overruns, the rest would only overrun again.
        t = await timed_runs(lambda: client.accounts(limit=ACCOUNTS), runs=20, budget_s=20, timeout_s=15,
                             warmup=0)
        out += _stats(f"{tag}: one request, `limit=10000`", t, len(t.last["accounts"]) if t.last else 0,
                      p95=True)
        if t.timed_out or not t.ms:
            _notes.add(f"With setup tasks, one listing of 10,000 did not finish within "
                          f"{t.limit_ms / 1000:.0f} s, so the other listings of this fleet were not tried "
                          "(each would take as long), and the daemon was stopped with SIGKILL after a 3 s grace.")
            return out
        for label, params in (("state filter `state=ready`", {"state": "ready"}),
                              ("text search `q=7` (broad)", {"q": "7"})):
            t = await timed_runs(lambda params=params: client.accounts(limit=ACCOUNTS, **params), runs=10,
                                 budget_s=10, timeout_s=10)
            out += _stats(f"{tag}: {label}, `limit=10000`", t, len(t.last["accounts"]) if t.last else 0)
        t = await timed_runs(lambda: client.all_accounts(page=1000), runs=5, budget_s=15, timeout_s=10)
        out += _stats(f"{tag}: all 10,000 in pages of 1,000, total", t, len(t.last or []))
    return out


# ---- results ------------------------------------------------------------------------------------------

def _stats(name: str, t: Timings, rows: int | None, *, p95: bool = False,
           target: float | None = TARGET_MS) -> list[Result]:
    rows_note = f"{rows:,} rows; " if rows is not None else ""
    if not t.ms:
        note = f"{rows_note}did not answer within the {t.limit_ms / 1000:.0f} s limit"
        return [Result(name, t.limit_ms, "ms", target, at_least=True, note=note)]
    note = f"{rows_note}median of {len(t.ms)}" + (" (stopped by a time limit)" if t.timed_out else "")
    out = [Result(f"{name}: median", round(median(t.ms), 1), "ms", target, note=note)]
    if p95:
        out.append(Result(f"{name}: p95", round(percentile(t.ms, 95), 1), "ms", target,
                          note=f"{len(t.ms)} runs, min {min(t.ms):.0f} ms, max {max(t.ms):.0f} ms"))
    return out


if __name__ == "__main__":
    for r in asyncio.run(run()):
        print(r.name, r.shown_value(), r.verdict())
