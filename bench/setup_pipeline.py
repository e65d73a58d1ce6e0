"""The setup pipeline at 10,000 accounts: dispatch of 80,000 tasks, and the scheduler's own overhead.

Two parts, both in this process (the daemon's code, no subprocess: the point is
the scheduler's CPU cost, and a profile of it):

1. **Dispatch**: a fresh store with 10,000 accounts (the simulator's seeds, all
   non-probe), a config with all four media paths set (8 tasks per account),
   the daemon's commit hook (``change_publisher`` into a ``Hub``). Timed:
   ``SetupScheduler.dispatch()`` creating 80,000 tasks, then again creating 0;
   apart, the stream's share for a connected client (the log rows read back,
   the account views of the 10,000 touched accounts, their deltas).
2. **Scheduler throughput**: the real ``Daemon`` (control socket, HTTP,
   onboarding, the setup scheduler) on the simulator with zero latency, no
   faults, no dead accounts, setup enabled, on a data dir where those 80,000
   tasks are dispatched. Media tasks use real small files made here (a JPEG, a
   PNG, and square H.264 MP4s so no conversion runs). Completed tasks (done +
   failed) are counted from the database every 0.5 s; CPU time per thread (the
   event loop, the writer connection's thread, the rest) from
   ``/proc/self/task``. One more run under cProfile names the top costs.
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import pstats
import re
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._common import in_process, scratch_dir, write_config
from bench.report import Result, median
from tgdaemon.store.rules import DISPATCH_ROWS

TITLE = "Setup pipeline: dispatch of 80,000 tasks and the scheduler's throughput"
ACCOUNTS = int(os.environ.get("BENCH_SETUP_ACCOUNTS", "10000"))
DISPATCH_RUNS = 3
BIG_ACCOUNTS = int(os.environ.get("BENCH_SETUP_BIG_ACCOUNTS", "100000"))  # issue 13 item 5: 800,000 tasks
DISPATCH_TARGET_S = 3.0
HOLD_TARGET_S = 0.1  # issue 13: a dispatch never holds the writer longer than this at a time
PROBE_EVERY_S = 0.01
RATE_TARGET = 2000.0
SAMPLE_S = 0.5
# (label, fast_concurrency, media_concurrency, with media tasks, window in seconds)
RUNS: list[tuple[str, int, int, bool, float]] = [
    ("all 8 tasks, fast 64 / media 16", 64, 16, True, 30.0),
    ("4 fast tasks only, fast 64", 64, 16, False, 10.0),
    ("all 8 tasks, fast 32 / media 4 (the defaults)", 32, 4, True, 10.0),
    ("all 8 tasks, fast 256 / media 64", 256, 64, True, 10.0),
]
DIAG_WINDOW_S = 6.0

ABOUT = f"""\
Issue 4 item 9. **Dispatch**: a fresh store with {ACCOUNTS:,} accounts (the simulator's seeds, none a
probe), a config with all four `[setup.media]` paths set (8 tasks per account), and the daemon's
commit hook (`store.on_commit = change_publisher(hub)`, no stream client connected); timed is
`SetupScheduler.dispatch()` end to end (transactions of at most {DISPATCH_ROWS:,} tasks each: the
`INSERT … SELECT`s, the touched accounts, the log rows naming them, COMMIT, the hook; the event with the
total in the last), first creating all tasks, then again creating none; median of {DISPATCH_RUNS} fresh
stores. Then one dispatch at {BIG_ACCOUNTS:,} accounts (issue 13: under {DISPATCH_TARGET_S:.0f} s, and never
holding the writer more than {HOLD_TARGET_S * 1000:.0f} ms at a time): meanwhile another writer commits a
one-row write every {PROBE_EVERY_S * 1000:.0f} ms, and the longest it waited for its commit is the hold. Timed apart:
what the stream then does for a connected client, off the write lock (`stream.derive` over the new
log rows: reading them back and the {ACCOUNTS:,} account views they name, encoding the deltas).
**Scheduler**: the real `Daemon` in this process on the simulator with latency 0, every fault rate 0,
`dead_fraction` 0, `setup.enabled`, on a data dir where those tasks were dispatched beforehand;
media files are real and small (a 640×640 JPEG, a 720×1280 PNG story, a 480×480 2 s H.264 MP4 for
the animated avatar, so no ffmpeg conversion, and a 720×1280 3 s H.264 MP4 story), probed on
every task as the daemon does; no stream client connected. Throughput = completed tasks (done +
failed, counted in the database every {SAMPLE_S} s) ÷ time, from the first task starting (after start-up,
recovery and the daemon's own first dispatch, which finds nothing to create) to the last one finishing
or the end of a bounded window: at today's rate all 80,000 would take minutes, so most runs stop at
their window. CPU is per thread from `/proc/self/task` (the event loop; the writer connection's
thread, which runs SQLite; the rest: the reader, `to_thread` media probes). Targets: dispatch under
{DISPATCH_TARGET_S:.0f} s, scheduler at least {RATE_TARGET:,.0f} tasks/s."""

# History, written by hand: what this benchmark found and what fixed it (the figures above are this run's).
DIAGNOSIS = [
    ("**History.** The first run of this benchmark (2026-11-23, commit 02ee761) measured the scheduler at "
     "248 tasks/s with the default concurrency (425 at fast 64 / media 16, 590 at 256 / 64): a miss by about "
     "5×. Nearly all the time was the one writer connection. Four fixes, first tried in a scratch copy, are now "
     "in the code:"),
    "",
    ("1. Claims read due tasks through a partial index `account_tasks (task_type, retry_at, id) WHERE status IN "
     "('pending', 'retry')` (migration 0006), one ordered, limited read per task type, instead of sorting every "
     "eligible task for each claim: 20-30 ms a claim became under 1 ms."),
    ("2. Group commit: outcomes that arrive while a finishing transaction is being written go into the next one "
     "(`SetupScheduler._finish`, `Store.finish_setup_many`), not one transaction per task."),
    ("3. Inside a claim and a finish, one `executemany` per statement kind for the whole batch (locks, task "
     "updates, `last_ok_at`, lock releases, events)."),
    ("4. The commit hook binds the touched account ids as one JSON array (`json_each`) instead of one named "
     "parameter each, which SQLite resolves by a linear search: dispatch's hook went from 0.47 s to about "
     "0.15 s at 10,000 accounts, and dispatch at 40,000 accounts from 7.7 s to under 2 s."),
    "",
    ("Tried and dropped: a 5 ms pause before each claim to share it among more freed slots "
     "(+8 % with fixes 1-2, −17 % with 1-3)."),
]

_notes: list[str] = []


def notes() -> list[str]:
    return list(_notes)


# ---- media files ----------------------------------------------------------------------------------

def make_media(directory: Path) -> dict[str, str]:
    """The four [setup.media] files: real, small, and already what Telegram wants (no conversion)."""
    import imageio_ffmpeg
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    jpg, png = directory / "avatar.jpg", directory / "story.png"
    Image.new("RGB", (640, 640), (40, 120, 200)).save(jpg, quality=85)
    Image.new("RGB", (720, 1280), (200, 120, 40)).save(png)
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    videos = {"avatar.mp4": (480, 480, 2), "story.mp4": (720, 1280, 3)}
    for name, (w, h, s) in videos.items():
        subprocess.run([exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc=size={w}x{h}:rate=10:duration={s}", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                        "-preset", "ultrafast", "-movflags", "+faststart", str(directory / name)],
                       check=True, capture_output=True, timeout=60)
    return {"default_jpg_path": str(jpg), "default_gif_path": str(directory / "avatar.mp4"),
            "story_image_path": str(png), "story_video_path": str(directory / "story.mp4")}


# ---- configuration and seeding --------------------------------------------------------------------

def make_config(work: Path, media: dict[str, str] | None, *, fast: int = 64, media_q: int = 16,
                enabled: bool = False, accounts: int = ACCOUNTS) -> Any:
    from tgdaemon import config

    work.mkdir(parents=True, exist_ok=True)
    return config.load(write_config(work), env={}, overrides={
        "daemon": {"data_dir": str(work / "data"), "socket": str(work / "d.sock"), "http": "127.0.0.1:0",
                   "log_level": "warning"},
        "simulator": {"accounts": accounts, "probe_fraction": 0.0, "dead_fraction": 0.0, "latency_min_ms": 0.0,
                      "latency_max_ms": 0.0, "flood_wait_rate": 0.0, "peer_flood_rate": 0.0,
                      "transient_rate": 0.0},
        "setup": {"enabled": enabled, "dispatch_interval_seconds": 3600.0,
                  "media": media or {}, "queues": {"fast_concurrency": fast, "media_concurrency": media_q},
                  "profile": {"first_name": "Bench", "last_name": "Fleet"}},
    })


def db_path(cfg: Any) -> Path:
    from tgdaemon.lifecycle.datadir import DB_NAME

    return cfg.data_dir() / DB_NAME


async def seed(store: Any, sim: Any) -> None:
    """The simulator's accounts, every one a worker (no probe): setup wants all of them."""
    async with store.tx() as tx:
        await store.insert_accounts(tx, (
            {"phone": s.phone, "tg_user_id": s.tg_user_id, "label": s.label, "is_probe": 0,
             "first_name": s.first_name, "last_name": s.last_name, "profile_json": "{}"} for s in sim.seeds()))
        await store.set_meta(tx, "gateway", sim.name)


# ---- part 1: dispatch -----------------------------------------------------------------------------

@dataclass
class DispatchRun:
    first_s: float
    stream_s: float
    created: int
    due: int
    second_s: float
    second_created: int
    deltas: int
    longest_wait: float = 0.0  # of a one-row write committed beside the first dispatch
    probes: int = 0


async def _probe_writes(store: Any, waits: list[float]) -> None:
    """Another writer beside the dispatch: how long each of its one-row commits waited."""
    i = 0
    while True:
        started = time.perf_counter()
        async with store.tx() as tx:
            await store.set_meta(tx, "bench_probe", str(i))
        waits.append(time.perf_counter() - started)
        i += 1
        await asyncio.sleep(PROBE_EVERY_S)


async def dispatch_once(work: Path, media: dict[str, str], accounts: int = ACCOUNTS, *,
                        probed: bool = False) -> DispatchRun:
    from tgdaemon.gateway.simulator import Simulator
    from tgdaemon.lifecycle.daemon import change_publisher
    from tgdaemon.setup.scheduler import SetupScheduler
    from tgdaemon.store.sqlite import SQLiteStore
    from tgdaemon.stream import FOLLOW_ROWS, Hub, derive

    cfg = make_config(work, media, accounts=accounts)
    sim = Simulator(cfg.simulator)
    store = await SQLiteStore.open(db_path(cfg))
    try:
        await seed(store, sim)
        hub = await Hub.open(store, queue_size=cfg.daemon.stream_queue_size,
                             replay_size=cfg.daemon.stream_replay_size)
        store.on_commit = change_publisher(hub)
        scheduler = SetupScheduler(cfg, store, sim, work / "media-work")
        seq0 = hub.seq
        waits: list[float] = []
        probe = asyncio.create_task(_probe_writes(store, waits)) if probed else None
        started = time.perf_counter()
        created, due = await scheduler.dispatch()
        first = time.perf_counter() - started
        if probe is not None:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)
        # What the stream then does for a connected client, off the write lock: read the rows back, read
        # the views they name, encode the deltas (tgdaemon.stream.derive, as Hub.run does it).
        started = time.perf_counter()
        positions = await derive(store, await store.events_after(seq0, FOLLOW_ROWS), seq0)
        stream_s = time.perf_counter() - started
        started = time.perf_counter()
        again, _ = await scheduler.dispatch()
        second = time.perf_counter() - started
        return DispatchRun(first, stream_s, created, due, second, again, sum(len(p.items) for p in positions),
                           max(waits, default=0.0), len(waits))
    finally:
        await store.close()


# ---- part 2: the scheduler in a running daemon ----------------------------------------------------

def thread_cpu() -> dict[int, float]:
    """CPU seconds (user + system) of each thread of this process, by native thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for entry in os.scandir("/proc/self/task"):
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


@dataclass
class Throughput:
    label: str
    fast: int
    media: int
    with_media: bool
    total: int
    completed: int = 0
    failed: int = 0
    seconds: float = 0.0
    finished: bool = False
    samples: list[tuple[float, int]] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    profile: str = ""
    profile_stats: pstats.Stats | None = None
    running_max: int = 0
    two_running: int = 0
    startup_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    def windows(self) -> list[float]:
        """Rates over each sampling interval."""
        return [(c1 - c0) / (t1 - t0) for (t0, c0), (t1, c1) in zip(self.samples, self.samples[1:]) if t1 > t0]


async def prepare_data_dir(work: Path, cfg: Any) -> int:
    """Seed and dispatch with a plain store (no hook), closed again before the daemon opens it."""
    from tgdaemon.gateway.simulator import Simulator
    from tgdaemon.setup.tasks import required_tasks
    from tgdaemon.store.sqlite import SQLiteStore

    store = await SQLiteStore.open(db_path(cfg))
    try:
        await seed(store, Simulator(cfg.simulator))
        created, _ = await store.dispatch_setup(required_tasks(cfg.setup))
    finally:
        await store.close()
    return created


class WriterTimer:
    """Round-trip time of every statement on the writer connection, by statement kind, and the commit hook.

    Wraps the two methods of the daemon's writer connection object (instance attributes, set on
    this run's store only): a measurement, nothing else changes.
    """

    def __init__(self) -> None:
        self.stats: dict[str, list[float]] = {}

    @staticmethod
    def kind(sql: str) -> str:
        words = sql.split()
        head = " ".join(words[:2]).upper()
        if head.startswith("SELECT"):
            if "FROM account_tasks t" in sql and "task_type" in sql and "LIMIT" in sql:
                return "claim: SELECT the due tasks"
            if "setup_done" in sql:
                return "hook: SELECT the account views"
            return "SELECT " + (sql.split(" FROM ")[1].split()[0] if " FROM " in sql else "")
        if head.startswith(("INSERT INTO", "INSERT OR")):
            table = words[2] if head.startswith("INSERT INTO") else words[4]
            return f"INSERT {table}"
        if head.startswith("UPDATE"):
            what = sql.split(" SET ")[1].split("=")[0].strip()
            return f"UPDATE {words[1]} SET {what} …"
        if head.startswith("DELETE"):
            return f"DELETE {words[2]}"
        return head

    def add(self, key: str, seconds: float) -> None:
        entry = self.stats.setdefault(key, [0, 0.0])
        entry[0] += 1
        entry[1] += seconds

    def install(self, store: Any) -> None:
        conn = store._writer  # a measurement only
        execute, fetchall = conn.execute, conn.execute_fetchall
        timer = self

        async def timed_execute(sql: str, params: Any = None) -> Any:
            started = time.perf_counter()
            try:
                return await (execute(sql, params) if params is not None else execute(sql))
            finally:
                timer.add(timer.kind(sql), time.perf_counter() - started)

        async def timed_fetchall(sql: str, params: Any = None) -> Any:
            started = time.perf_counter()
            try:
                return await (fetchall(sql, params) if params is not None else fetchall(sql))
            finally:
                timer.add(timer.kind(sql), time.perf_counter() - started)

        conn.execute, conn.execute_fetchall = timed_execute, timed_fetchall
        hook = store.on_commit

        async def timed_hook(tx: Any) -> None:
            started = time.perf_counter()
            try:
                await hook(tx)
            finally:
                timer.add("commit hook, whole (incl. its SELECT)", time.perf_counter() - started)

        store.on_commit = timed_hook


async def throughput(work: Path, label: str, fast: int, media_q: int, media: dict[str, str] | None,
                     window: float, *, profile: bool = False, sql_timer: WriterTimer | None = None) -> Throughput:
    from tgdaemon.gateway.simulator import Simulator
    from tgdaemon.lifecycle.daemon import Daemon

    cfg = make_config(work, media, fast=fast, media_q=media_q, enabled=True)
    total = await prepare_data_dir(work, cfg)
    out = Throughput(label, fast, media_q, media is not None, total)
    daemon = Daemon(cfg, Simulator(cfg.simulator), install_signal_handlers=False)
    profiler = cProfile.Profile() if profile else None
    try:
        async with in_process(daemon) as rt:
            assert rt is not None
            store = rt.store
            main_tid = threading.get_native_id()
            writer_tid = store._writer._thread.native_id  # a measurement only: which thread runs the writes
            reader_tid = store._reader._thread.native_id
            # The clock starts when the first task has started: after start-up, recovery and the
            # daemon's own first dispatch (which finds nothing to create), not before.
            ready_at = time.monotonic()
            while rt.setup.running() == 0 and time.monotonic() - ready_at < 30:
                await asyncio.sleep(0.005)
            out.startup_s = time.monotonic() - ready_at
            if sql_timer is not None:
                sql_timer.install(store)
            if profiler is not None:
                profiler.enable()
            t0 = time.monotonic()
            cpu0 = thread_cpu()
            proc0 = time.process_time()
            base = sum(r[0] for r in await store.read(
                "SELECT COUNT(*) FROM account_tasks WHERE status IN ('done', 'failed')"))
            out.total -= base
            out.samples.append((0.0, 0))
            while True:
                await asyncio.sleep(SAMPLE_S)
                out.running_max = max(out.running_max, rt.setup.running())
                counts = {r[0]: r[1] for r in await store.read(
                    "SELECT status, COUNT(*) FROM account_tasks WHERE status IN ('done', 'failed') GROUP BY status")}
                elapsed = time.monotonic() - t0
                completed = counts.get("done", 0) + counts.get("failed", 0) - base
                out.samples.append((elapsed, completed))
                out.completed, out.failed, out.seconds = completed, counts.get("failed", 0), elapsed
                if completed >= out.total:
                    out.finished = True
                    break
                if elapsed >= window:
                    break
            if profiler is not None:
                profiler.disable()
            cpu1 = thread_cpu()
            proc = time.process_time() - proc0

            def delta(tid: int) -> float:
                return cpu1.get(tid, 0.0) - cpu0.get(tid, 0.0)

            known = delta(main_tid) + delta(writer_tid) + delta(reader_tid)
            out.cpu = {"event loop": delta(main_tid), "writer thread (SQLite)": delta(writer_tid),
                       "reader thread": delta(reader_tid), "other threads": max(0.0, proc - known), "process": proc}
            if out.finished and len(out.samples) >= 2:
                # the last task finished somewhere in the last interval: interpolate from the one before
                (ta, ca), (tb, cb) = out.samples[-2], out.samples[-1]
                if cb > ca:
                    out.seconds = ta + (out.total - ca) / (cb - ca) * (tb - ta)
            # Invariant worth checking while we are here: no account ever ran two setup tasks at once.
            rows = list(await store.read(
                "SELECT COUNT(*) FROM (SELECT account_id FROM account_tasks WHERE status = 'running'"
                " GROUP BY account_id HAVING COUNT(*) > 1)"))
            out.two_running = rows[0][0]
    finally:
        if profiler is not None:
            profiler.disable()
    if profiler is not None:
        out.profile_stats = pstats.Stats(profiler)
    return out


# ---- the profile, summarised ----------------------------------------------------------------------

PROFILE_KEYS: list[tuple[str, str, tuple[str, ...]]] = [
    ("claim_setup", "tgdaemon/store/setup.py", ("claim_setup",)),
    ("finish_setup", "tgdaemon/store/setup.py", ("finish_setup",)),
    ("commit hook (change_publisher)", "tgdaemon/lifecycle/daemon.py", ("on_commit",)),
    ("the stream's reading of the log (derive)", "tgdaemon/stream.py", ("derive",)),
    ("  of which accounts_by_id", "tgdaemon/store/sqlite/accounts.py", ("accounts_by_id",)),
    ("Tx.event (the events)", "tgdaemon/store/core.py", ("event",)),
    ("the tasks themselves (tasks.py, simulator included)", "tgdaemon/setup/tasks.py",
     ("ensure_2fa", "update_name", "run")),
    ("_execute (a task and its finish)", "tgdaemon/setup/scheduler.py", ("_execute",)),
    ("_feed (the claim loops)", "tgdaemon/setup/scheduler.py", ("_feed",)),
    ("aiosqlite round trips (Connection._execute)", "aiosqlite/core.py", ("_execute",)),
]


def summarise_profile(stats: pstats.Stats) -> tuple[float, float, list[tuple[str, float]], list[str]]:
    """(profiled seconds, seconds idle in epoll, [(label, cumulative s)], top functions by own time)."""
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for (_, _, tt, _, _) in raw.values())
    idle = sum(tt for (_, _, fn), (_, _, tt, _, _) in raw.items() if "poll' of 'select.epoll" in fn)
    found: list[tuple[str, float]] = []
    for label, path, names in PROFILE_KEYS:
        cum = sum(ct for (file, _, fn), (_, _, _, ct, _) in raw.items() if file.endswith(path) and fn in names)
        found.append((label, cum))
    busy = [kv for kv in raw.items() if "poll' of 'select.epoll" not in kv[0][2]]
    top = sorted(busy, key=lambda kv: kv[1][2], reverse=True)[:10]
    root = str(Path(__file__).resolve().parent.parent) + "/"
    lines = []
    for (file, line, fn), (_, nc, tt, ct, _) in top:
        short = re.sub(r".*/lib/python3\.\d+/(site-packages/)?", "", file).replace(root, "")
        lines.append(f"{short}:{line} {fn}: own {tt:.2f} s, cumulative {ct:.2f} s, {nc:,} calls")
    return total, idle, found, lines


# ---- the benchmark --------------------------------------------------------------------------------

async def run() -> list[Result]:
    _notes.clear()
    results: list[Result] = []
    with scratch_dir("tgbench-setup-") as work:
        media = make_media(work / "media")
        # part 1: dispatch
        runs = []
        for i in range(DISPATCH_RUNS):
            runs.append(await dispatch_once(work / f"dispatch-{i}", media))
        firsts = [r.first_s for r in runs]
        r0 = runs[0]
        results.append(Result(
            f"dispatch, {ACCOUNTS:,} accounts, first run (creates {r0.created:,} tasks): median",
            median(firsts), "s", DISPATCH_TARGET_S,
            note=f"{DISPATCH_RUNS} fresh stores: {', '.join(f'{x:.2f}' for x in firsts)} s; "
                 f"{r0.deltas:,} deltas published; due after it {r0.due:,}"))
        results.append(Result(
            "  then the stream, off the write lock (log rows read back, account views, deltas): median",
            median([r.stream_s for r in runs]), "s",
            note=f"{r0.deltas:,} deltas (the accounts and the one event), for a connected client"))
        results.append(Result(
            f"dispatch again, nothing to create (created {r0.second_created}): median",
            median([r.second_s for r in runs]), "s", DISPATCH_TARGET_S))
        big = await dispatch_once(work / "dispatch-big", media, BIG_ACCOUNTS, probed=True)
        results.append(Result(
            f"dispatch at {BIG_ACCOUNTS:,} accounts, first run (creates {big.created:,} tasks)",
            big.first_s, "s", DISPATCH_TARGET_S,
            note=f"then the stream {big.stream_s:.2f} s for {big.deltas:,} deltas; "
                 f"{BIG_ACCOUNTS / ACCOUNTS:.0f}× the accounts took {big.first_s / median(firsts):.1f}× the time; "
                 f"again with nothing to create {big.second_s:.2f} s"))
        results.append(Result(
            f"  the longest another write waited for the writer meanwhile ({big.probes:,} one-row commits)",
            big.longest_wait, "s", HOLD_TARGET_S))
        # part 2: throughput
        for i, (label, fast, media_q, with_media, window) in enumerate(RUNS):
            t = await throughput(work / f"run-{i}", label, fast, media_q, media if with_media else None, window)
            windows = t.windows()
            cpu = ", ".join(f"{k} {v:.1f} s" for k, v in t.cpu.items())
            how = (f"all {t.total:,} done in {t.seconds:.1f} s" if t.finished
                   else f"{t.completed:,} of {t.total:,} tasks in the {window:.0f} s window")
            results.append(Result(
                f"scheduler: {label}", t.rate, "tasks/s", RATE_TARGET, lower_is_better=False,
                note=f"{how}; failed {t.failed}; per 0.5 s: min {min(windows):,.0f}, median "
                     f"{statistics.median(windows):,.0f}, max {max(windows):,.0f}; "
                     f"running at once up to {t.running_max}; CPU: {cpu}"))
            if t.two_running:
                _notes.append(f"**{label}: {t.two_running} accounts had two running tasks at once**")
        # where the time goes: the writer's statements, then a profile of the event loop
        timer = WriterTimer()
        t = await throughput(work / "sql", "sql", 64, 16, media, DIAG_WINDOW_S, sql_timer=timer)
        _notes.append(f"**Where the writer's time goes** (a separate {DIAG_WINDOW_S:.0f} s run, all 8 tasks, fast 64 / "
                      f"media 16, every statement on the writer connection timed from the event loop, round "
                      f"trip through aiosqlite's thread included: {t.completed:,} tasks, {t.rate:,.0f} tasks/s). "
                      f"The writer connection is one, behind one lock: the sum of its round trips over the "
                      f"window is how busy the write path is.")
        _notes.append("")
        _notes.append("| statement | calls | per task | mean | total | share of the window |")
        _notes.append("|---|---|---|---|---|---|")
        busy = 0.0
        for key, (n, secs) in sorted(timer.stats.items(), key=lambda kv: -kv[1][1]):
            if not key.startswith("commit hook"):
                busy += secs
            if secs < 0.005 * t.seconds:
                continue
            _notes.append(f"| {key} | {n:,} | {n / max(t.completed, 1):.2f} | {secs / n * 1000:.3f} ms | "
                          f"{secs:.2f} s | {secs / t.seconds * 100:.0f} % |")
        _notes.append(f"| all statements on the writer | | | | {busy:.2f} s | {busy / t.seconds * 100:.0f} % |")
        _notes.append("")
        t = await throughput(work / "profile", "profile", 64, 16, media, DIAG_WINDOW_S, profile=True)
        assert t.profile_stats is not None
        total, idle, found, top = summarise_profile(t.profile_stats)
        _notes.append(f"**Profile of the event loop** (cProfile, which sees the event-loop thread only, a separate "
                      f"{DIAG_WINDOW_S:.0f} s run of all 8 tasks at fast 64 / media 16: {t.completed:,} tasks, "
                      f"{t.rate:,.0f} tasks/s under the profiler). Of {total:.1f} s profiled the loop spent "
                      f"{idle:.1f} s ({idle / total * 100:.0f} %) idle in epoll, waiting for aiosqlite's threads "
                      f"to answer. Cumulative time:")
        _notes.append("")
        for label, cum in found:
            _notes.append(f"- {label}: {cum:.2f} s ({cum / total * 100:.0f} %)")
        _notes.append("")
        _notes.append("Top functions by own time (epoll left out):")
        _notes.append("")
        _notes.extend(f"- `{line}`" for line in top)
        _notes.append("")
        _notes.extend(DIAGNOSIS)
    return results


if __name__ == "__main__":  # pragma: no cover - an exploration helper
    import sys

    async def _main() -> None:
        for r in await run():
            print(r.name, r.shown_value(), r.verdict(), r.note)
        print("\n".join(_notes))

    asyncio.run(_main())
    sys.exit(0)
