"""The dashboard at 10,000 and 50,000 accounts, this tree beside an older commit's: startup to a full table, a
filter keystroke, a tick of 1,000 deltas, memory; and with 100,000 accounts: connect to a full table while the
snapshot comes a page at a time, and the daemon's memory for it.

The dashboard runs headless (``App.run_test``) in a process of its own (bench/_tui_worker.py), on this
tree's code and on the code of ``BENCH_TUI_BEFORE`` (a commit, exported by ``git archive``; empty: this tree
only), one after the other against the same daemon subprocess with simulated accounts. A tick is what the
app does for a burst of deltas: decode each message from the wire bytes, apply it to the model, then one
repaint of the visible view (filter, sort, keep the selection) and the drawing of every visible line, as
Textual would ask for it. ``BENCH_TUI_FLEETS`` ("10000,50000") and ``BENCH_TUI_BIG_ACCOUNTS`` (100,000; 0
leaves that part out) set the fleets.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from bench._common import (
    daemon_subprocess,
    export_commit,
    json_job,
    rss_mb,
    scratch_dir,
)
from bench.report import ROOT, Result, median, percentile

FLEETS = [int(n) for n in os.environ.get("BENCH_TUI_FLEETS", "10000,50000").split(",") if n.strip()]
BIG = int(os.environ.get("BENCH_TUI_BIG_ACCOUNTS", "100000"))
BEFORE = os.environ.get("BENCH_TUI_BEFORE", "af2c66b")  # main before issue 15
WORKER = Path(__file__).resolve().parent / "_tui_worker.py"
TITLE = (f"The dashboard: {' and '.join(f'{n:,}' for n in FLEETS)} accounts (keystroke, tick of 1,000 deltas, "
         f"startup); connect at {BIG:,}")
DELTAS = 1_000
TICKS = 20
STARTUPS = 3
CONNECTS = 3
SIZE = (160, 50)
STARTUP_TARGET_MS = 3000.0
KEY_TARGET_MS = 100.0
CONNECT_TARGET_MS = 2000.0
TICK_TARGET_MS = 50.0
RSS_TARGET_MB = 250.0
FRAME_LIMIT = 1024 * 1024
# A node reads every account it owns at each heartbeat (``Ownership.refresh``): at 100,000 accounts that holds the
# daemon's event loop a good part of every 2 s. The connect is measured with the defaults, then with that read
# every 30 s, to tell the snapshot's own cost from it.
QUIET_NODE = ", node heartbeat every 30 s"
QUIET_NODE_CONFIG = "[nodes]\nheartbeat_seconds = 30.0\nlease_seconds = 120.0\ndead_after_seconds = 60.0\n"
TYPED = ("sim-0001", "state:cooldown")  # as bench/_tui_worker.py types them
READ_S = 3.0
TICK_S = 0.25  # tgtui.app.REPAINT_SECONDS: the app repaints at most this often
KEY_GAP_S = 0.12

ABOUT = f"""\
`tgtui.app.FleetApp` headless (`App.run_test`, a {SIZE[0]}x{SIZE[1]} terminal) in a process of its own
(`bench/_tui_worker.py`), against a real daemon (`python -m tgdaemon run --simulate --accounts N`) over its
Unix socket, at {' and '.join(f'{n:,}' for n in FLEETS)} accounts. **Before** = the code of commit
{BEFORE or '(none)'} (`BENCH_TUI_BEFORE`, main before issue 15, exported by `git archive`), **after** = this tree; both
against the same daemon, one after the other, so a figure and its neighbour met the same machine.
*Startup*: from creating the app to the accounts view holding every row and drawn (connect, snapshot,
decode, model, first repaint), {STARTUPS} runs. *Keystroke*: {READ_S:.0f} s after the full table (the
operator reads it first; the stream is stopped from there so the rows hold still), the filter is typed one
character at a time, {' and '.join(f'`{t}`' for t in TYPED)}, {KEY_GAP_S * 1000:.0f} ms apart: each
figure is from the `Input.Changed` of one more character to the table rebuilt and every visible line drawn;
then the filter cleared (`esc`), timed the same way. *Tick*: {DELTAS:,} account deltas (real account views
with a new state: cooldown with a countdown, busy, disabled, ready) encoded as the daemon sends them, then
decoded, applied to the model, one repaint of the accounts view and every visible line drawn; {TICKS}
ticks per setting, {TICK_S * 1000:.0f} ms apart as the app's repaint timer makes them (the deltas of each
made beforehand). The app repaints at most 4 times a second, so at 1,000 changes/s a real tick carries
about 250 deltas: {DELTAS:,} per tick is four times that. Where the clock changes what the rows show (a
countdown sort, a state filter) the order is made whole once a second and the ticks between take in only
the rows their deltas changed, so the p95 is the whole rebuild's figure and the median the others'.
Each figure is wall time; the notes under it give this process's CPU time for the same work, which
the other processes on a shared machine disturb less. *Memory*: the dashboard process's RSS with
every account loaded. Targets (issue 15): startup under {STARTUP_TARGET_MS / 1000:.0f} s, a keystroke under
{KEY_TARGET_MS:.0f} ms, a tick under {TICK_TARGET_MS:.0f} ms; memory under {RSS_TARGET_MB:.0f} MB at 10,000 (issue 6).
*Connect at {BIG:,}* (issue 13, this tree only): a daemon with {BIG:,} accounts, once it counts them all and
its node owns them; from creating the app to every row in its table ({CONNECTS} runs), and to the first rows
shown (the snapshot comes a page at a time and the table fills as it comes). Then a stock aiohttp client
reads one snapshot as fast as it can: its frames, the largest, the daemon's CPU time for it and the daemon's
peak RSS above its RSS before (`VmHWM` after resetting it through `/proc/PID/clear_refs`). The connect again
on a daemon whose node beats every 30 s instead of 2 (a node reads every account it owns at each heartbeat,
which at {BIG:,} holds the daemon's event loop a good part of the time): the snapshot's own cost. Target:
connect under {CONNECT_TARGET_MS / 1000:.0f} s, no frame over 1 MiB.
"""


async def run() -> list[Result]:
    results: list[Result] = []
    with scratch_dir("tgbench-tui-") as work:
        trees = {"after": ROOT} | ({"before": export_commit(BEFORE, work / "before")} if BEFORE else {})
        for accounts in FLEETS:
            (work / f"fleet{accounts}").mkdir()
            async with daemon_subprocess(work / f"fleet{accounts}", accounts=accounts, ready_timeout=300) as daemon:
                await _settled(daemon.socket, accounts)
                found = {code: await _dashboard(tree, daemon.socket, accounts) for code, tree in
                         sorted(trees.items(), reverse=True)}  # before, then after
            results += _side_by_side(accounts, found)
        for n, (setting, config) in enumerate((("", ""), (QUIET_NODE, QUIET_NODE_CONFIG)) if BIG else ()):
            (work / f"big{n}").mkdir()
            async with daemon_subprocess(work / f"big{n}", accounts=BIG, ready_timeout=600, config=config) as daemon:
                await _settled(daemon.socket, BIG)
                results += await _connects(daemon.socket, daemon.pid, setting)
                if not setting:
                    results += await _raw_snapshot(daemon.socket, daemon.pid)
    return results


async def _dashboard(tree: Path, socket: Path, accounts: int) -> dict[str, Any]:
    args = {"socket": str(socket), "accounts": accounts, "startups": STARTUPS, "ticks": TICKS,
            "read_seconds": READ_S, "key_gap_seconds": KEY_GAP_S, "tick_seconds": TICK_S}
    return await json_job([sys.executable, str(WORKER), str(tree), json.dumps(args)], tree=tree,
                          what=f"the dashboard of {tree.name} at {accounts:,} accounts", timeout=600)


def _side_by_side(accounts: int, found: dict[str, dict[str, Any]]) -> list[Result]:
    """Each measurement's row for before (if measured), then after, at one fleet size."""
    out: list[Result] = []
    at = f"{accounts:,} accounts"

    def both(name: str, unit: str, target: float | None, value: Any, note: Any = None) -> None:
        for code in ("before", "after"):
            if code in found:
                shown = f"{name} ({code})"
                out.append(Result(shown, value(found[code]), unit, target=target,
                                  note=note(found[code]) if note else ""))

    both(f"startup to a full table of {at}: median", "ms", STARTUP_TARGET_MS,
         lambda f: round(median(f["startup"])), lambda f: f"{len(f['startup'])} runs, max {max(f['startup']):.0f} ms")
    for typed in TYPED:
        both(f"filter keystroke, typing `{typed}`, {at}: median", "ms", KEY_TARGET_MS,
             lambda f, t=typed: round(median(f["keys"][t]["times"]), 1),
             lambda f, t=typed: "per character: " + ", ".join(f"{x:.0f}" for x in f["keys"][t]["times"])
                                + f" ms; CPU median {median(f['keys'][t]['cpu']):.1f} ms")
        both(f"filter keystroke, typing `{typed}`, {at}: slowest", "ms", KEY_TARGET_MS,
             lambda f, t=typed: round(max(f["keys"][t]["times"]), 1),
             lambda f, t=typed: f"CPU {max(f['keys'][t]['cpu']):.0f} ms; {f['keys'][t]['rows']:,} rows shown once "
                                f"typed; clearing it: {f['keys'][t]['clear']:.0f} ms")
    for setting in next(iter(found.values()))["ticks"]:
        both(f"tick of {DELTAS:,} deltas, {setting}, {at}: median", "ms", TICK_TARGET_MS,
             lambda f, s=setting: round(median(f["ticks"][s]["times"]), 1),
             lambda f, s=setting: f"{len(f['ticks'][s]['times'])} ticks, {f['ticks'][s]['rows']:,} rows shown; "
                                  f"CPU median {median(f['ticks'][s]['cpu']):.1f} ms")
        both(f"tick of {DELTAS:,} deltas, {setting}, {at}: p95", "ms", TICK_TARGET_MS,
             lambda f, s=setting: round(percentile(f["ticks"][s]["times"], 95), 1),
             lambda f, s=setting: f"max {max(f['ticks'][s]['times']):.1f} ms; CPU p95 "
                                  f"{percentile(f['ticks'][s]['cpu'], 95):.1f} ms")
    both(f"RSS of the dashboard's process, {at} loaded", "MB", RSS_TARGET_MB if accounts <= 10_000 else None,
         lambda f: round(f["rss"], 1))
    return out


async def _settled(socket: Path, accounts: int) -> None:
    """The daemon answers before it has seeded its simulated accounts, and takes them for its node a batch at a
    time after that: wait until its status counts them all, owned."""
    from tgdaemon.control.client import ControlClient

    async with ControlClient(socket, timeout=60) as client:
        for _ in range(1200):
            status = await client.status()
            owned = sum(node["accounts"] for node in status["nodes"])
            if sum(status["accounts"].values()) >= accounts and owned >= accounts:
                return
            await asyncio.sleep(0.5)
    raise RuntimeError(f"the bench daemon did not seed and own {accounts:,} accounts within 10 minutes")


async def _connects(socket: Path, pid: int, setting: str) -> list[Result]:
    from tgtui.app import FleetApp
    from tgtui.screens.accounts import AccountsScreen

    full: list[float] = []
    first: list[float] = []
    cpu: list[tuple[float, float]] = []  # (the dashboard's, the daemon's)
    for _ in range(CONNECTS):
        gc.collect()
        started, app_cpu, daemon_cpu = time.perf_counter(), time.process_time(), proc_cpu(pid)
        app = FleetApp(socket)
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            assert isinstance(screen, AccountsScreen)
            shown: float | None = None
            deadline = time.monotonic() + 120
            while len(screen.rowset.rows) < BIG and time.monotonic() < deadline:
                if shown is None and screen.rowset.rows:
                    shown = (time.perf_counter() - started) * 1000
                await pilot.pause(0.01)
            await pilot.pause()  # let Textual draw the full table
            full.append((time.perf_counter() - started) * 1000)
            first.append(shown if shown is not None else full[-1])
            cpu.append((time.process_time() - app_cpu, proc_cpu(pid) - daemon_cpu))
    of = f"{BIG:,} accounts{setting}"
    return [
        Result(f"connect to a full table of {of}: median", round(median(full)), "ms",
               target=CONNECT_TARGET_MS, note=f"{CONNECTS} runs, max {max(full):.0f} ms"),
        Result(f"first rows shown, {of}: median", round(median(first)), "ms", note=f"max {max(first):.0f} ms"),
        Result(f"CPU time of one connect, {of}: dashboard, daemon (median)",
               f"{median([c[0] for c in cpu]):.2f} s, {median([c[1] for c in cpu]):.2f} s",
               note="the daemon's includes whatever else it did meanwhile"),
    ]


async def _raw_snapshot(socket: Path, pid: int) -> list[Result]:
    """One snapshot read by a stock client at full speed: how it is framed, and what it costs the daemon."""
    before = rss_mb(pid)
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS: the peak from here on
    sizes: list[int] = []
    started, daemon_cpu = time.perf_counter(), proc_cpu(pid)
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(socket))) as http, \
            http.ws_connect("http://tgdaemon/v1/watch", max_msg_size=0) as ws:
        for _ in range(100_000):
            msg = await asyncio.wait_for(ws.receive(), 60)
            sizes.append(len(msg.data))
            frame = msgspec.json.decode(msg.data)
            if frame["type"] in ("snapshot", "snapshot_part") and not frame["more"]:
                break
    elapsed, cpu = time.perf_counter() - started, proc_cpu(pid) - daemon_cpu
    peak = peak_rss_mb(pid)
    return [
        Result(f"snapshot of {BIG:,} accounts: largest frame", max(sizes), "bytes", target=FRAME_LIMIT,
               note=f"{len(sizes)} frames, {sum(sizes) / 1e6:.1f} MB, read in {elapsed * 1000:.0f} ms"),
        Result(f"snapshot of {BIG:,} accounts: daemon CPU time", round(cpu, 2), "s"),
        Result(f"snapshot of {BIG:,} accounts: daemon peak RSS above its RSS before", round(peak - before, 1), "MB",
               note=f"{before:.0f} MB before"),
    ]


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
