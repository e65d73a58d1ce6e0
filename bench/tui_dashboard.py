"""The dashboard with 10,000 accounts: startup to a full table, a tick of 1,000 deltas, memory.

Headless (``App.run_test``) in this process, against a real daemon subprocess
with 10,000 simulated accounts over its Unix socket. A tick is what the app
does for a burst of deltas: decode each message from the wire bytes, apply it
to the model, then one repaint of the visible view (filter, sort, keep the
selection) and the drawing of every visible line, as Textual would ask for it.
"""

from __future__ import annotations

import gc
import random
import time
from typing import Any

import msgspec

from bench._common import daemon_subprocess, rss_mb, scratch_dir
from bench.report import Result, median, percentile

TITLE = "The dashboard: 10,000 accounts, 1,000 deltas per tick"
ACCOUNTS = 10_000
DELTAS = 1_000
TICKS = 20
STARTUPS = 3
SIZE = (160, 50)
STARTUP_TARGET_MS = 2000.0
TICK_TARGET_MS = 50.0
RSS_TARGET_MB = 250.0

ABOUT = f"""\
`tgtui.app.FleetApp` headless (`App.run_test`, a {SIZE[0]}x{SIZE[1]} terminal) in the bench's process, against
a real daemon (`python -m tgdaemon run --simulate --accounts {ACCOUNTS:,}`) over its Unix socket. *Startup*:
from creating the app to the accounts view holding all {ACCOUNTS:,} rows and drawn (connect, snapshot,
decode, model, first repaint), {STARTUPS} runs. *Tick*: {DELTAS:,} account deltas (real account views with
a new state: cooldown with a countdown, busy, disabled, ready) encoded as the daemon sends them, then
decoded, applied to the model, one repaint of the accounts view and every visible line drawn; {TICKS}
ticks per setting. The app repaints at most 4 times a second, so at 1,000 changes/s a real tick carries
about 250 deltas: {DELTAS:,} per tick is four times that. *Memory*: this process's RSS with the app
running and the {ACCOUNTS:,} accounts loaded. Targets from issue 6: startup under {STARTUP_TARGET_MS / 1000:.0f} s,
a tick under {TICK_TARGET_MS:.0f} ms, memory under {RSS_TARGET_MB:.0f} MB.
"""

def _deltas(accounts: list[dict[str, Any]], seq: int, rng: random.Random, now: float) -> list[bytes]:
    """Wire-format deltas for ``DELTAS`` random accounts, continuing the stream at ``seq``."""
    out = []
    for n, account in enumerate(rng.sample(accounts, DELTAS)):
        data = {k: v for k, v in account.items() if not k.startswith("_")}
        state = rng.choice(("cooldown", "busy", "disabled", "ready"))
        data["state"] = state
        data["cooldown_until"] = (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + rng.randint(5, 3600)))
                                  if state == "cooldown" else None)
        out.append(msgspec.json.encode({"type": "delta", "seq": seq + n + 1, "kind": "account", "op": "upsert",
                                        "data": data}))
    return out


async def run() -> list[Result]:
    from tgtui.app import FleetApp
    from tgtui.screens.accounts import AccountsScreen

    results: list[Result] = []
    with scratch_dir("tgbench-tui-") as work:
        async with daemon_subprocess(work, accounts=ACCOUNTS) as daemon:
            startups: list[float] = []
            for attempt in range(STARTUPS):
                gc.collect()
                started = time.perf_counter()
                app = FleetApp(daemon.socket)
                async with app.run_test(size=SIZE) as pilot:
                    screen = app.screen
                    assert isinstance(screen, AccountsScreen)
                    deadline = time.monotonic() + 30
                    while len(screen.rowset.rows) < ACCOUNTS and time.monotonic() < deadline:
                        await pilot.pause(0.01)
                    await pilot.pause()  # let Textual draw the first full frame
                    startups.append((time.perf_counter() - started) * 1000)
                    if attempt == STARTUPS - 1:
                        rss = rss_mb()
                        results.append(Result("RSS of the dashboard's process, 10,000 accounts loaded", round(rss, 1),
                                              "MB", target=RSS_TARGET_MB))
                        app.workers.cancel_group(app, "stream")  # from here on the bench feeds the model itself
                        await pilot.pause()
                        results += _ticks(app, screen)
            results.insert(0, Result(f"startup to a full table of {ACCOUNTS:,} accounts: median",
                                     round(median(startups)), "ms", target=STARTUP_TARGET_MS,
                                     note=f"{STARTUPS} runs, max {max(startups):.0f} ms"))
    return results


def _ticks(app: Any, screen: Any) -> list[Result]:
    rng = random.Random(6)
    out = []
    settings = (("sorted by id", "", "id", False), ("sorted by cooldown, descending", "", "cooldown", True),
                ("filtered `state:cooldown`, sorted by state", "state:cooldown", "state", False))
    table = screen.table
    for name, text, sort, desc in settings:
        screen.rowset.filter, screen.rowset.sort, screen.rowset.desc = text, sort, desc
        times: list[float] = []
        for _ in range(TICKS):
            wire = _deltas(list(app.model.accounts.values()), app.model.seq, rng, app.clock())
            gc.collect()
            started = time.perf_counter()
            for raw in wire:
                app.model.apply(msgspec.json.decode(raw))
            screen.repaint()
            for y in range(table.size.height):
                table.render_line(y)
            times.append((time.perf_counter() - started) * 1000)
        out.append(Result(f"tick of {DELTAS:,} deltas, {name}: median", round(median(times), 1), "ms",
                          target=TICK_TARGET_MS, note=f"{TICKS} ticks, {len(screen.rowset.rows):,} rows shown"))
        out.append(Result(f"tick of {DELTAS:,} deltas, {name}: p95", round(percentile(times, 95), 1), "ms",
                          target=TICK_TARGET_MS, note=f"max {max(times):.1f} ms"))
    return out
