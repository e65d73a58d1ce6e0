"""The dashboard measured in a process of its own, on the code of one tree, against a running daemon.

Run by path, never imported: ``python bench/_tui_worker.py TREE JSON-ARGS``. ``TREE`` is the checkout whose
``tgtui`` is measured (this worktree, or the code of an older commit exported to a scratch dir), put first
on ``sys.path``; nothing of ``bench`` is imported, so the same file runs on both. It touches only what both
trees have: ``FleetApp``, a screen's ``rowset``, ``table``, ``repaint``, ``on_input_changed`` and
``action_clear_filter``. The result is one JSON line on stdout. Every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # the script's own directory (bench/) must not shadow anything
    sys.path.pop(0)
    sys.path.insert(0, sys.argv[1])

import msgspec  # noqa: E402

SIZE = (160, 50)
DELTAS = 1_000
TYPED = ("sim-0001", "state:cooldown")
TICK_SETTINGS = (("sorted by id", "", "id", False), ("sorted by cooldown, descending", "", "cooldown", True),
                 ("filtered `state:cooldown`, sorted by state", "state:cooldown", "state", False))


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


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _draw(table: Any) -> None:
    """Every visible line, as Textual asks for them when it paints the table."""
    for y in range(table.size.height):
        table.render_line(y)


async def measure(args: dict[str, Any]) -> dict[str, Any]:
    from textual.widgets import Input

    from tgtui.app import FleetApp
    from tgtui.screens.accounts import AccountsScreen

    accounts, socket = int(args["accounts"]), Path(args["socket"])
    out: dict[str, Any] = {"startup": [], "keys": {}, "ticks": {}}
    for attempt in range(int(args["startups"])):
        gc.collect()
        started = time.perf_counter()
        app = FleetApp(socket)
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            assert isinstance(screen, AccountsScreen)
            deadline = time.monotonic() + 60
            while len(screen.rowset.rows) < accounts and time.monotonic() < deadline:
                await pilot.pause(0.01)
            await pilot.pause()  # let Textual draw the first full frame
            out["startup"].append((time.perf_counter() - started) * 1000)
            if attempt < int(args["startups"]) - 1:
                continue
            out["rows"] = len(screen.rowset.rows)
            out["rss"] = _rss_mb()
            app.workers.cancel_group(app, "stream")  # from here on the rows move only as the bench says
            await pilot.pause(float(args["read_seconds"]))  # the operator reads the screen before typing
            table = screen.table
            screen.action_filter()
            box = screen.query_one("#filter", Input)
            for typed in TYPED:
                times: list[float] = []
                cpu: list[float] = []
                for k in range(1, len(typed) + 1):
                    gc.collect()
                    started, used = time.perf_counter(), time.process_time()
                    screen.on_input_changed(Input.Changed(box, typed[:k]))
                    _draw(table)
                    times.append((time.perf_counter() - started) * 1000)
                    cpu.append((time.process_time() - used) * 1000)
                    await pilot.pause(float(args["key_gap_seconds"]))
                started = time.perf_counter()
                screen.action_clear_filter()
                _draw(table)
                out["keys"][typed] = {"times": times, "cpu": cpu, "clear": (time.perf_counter() - started) * 1000,
                                      "rows": len(screen.rowset.rows)}
                await pilot.pause(float(args["key_gap_seconds"]))
            out["ticks"] = await _ticks(app, screen, int(args["ticks"]), float(args["tick_seconds"]))
    return out


async def _ticks(app: Any, screen: Any, ticks: int, spacing: float) -> dict[str, Any]:
    """Ticks ``spacing`` apart, as the app's repaint timer makes them; the deltas of each are made beforehand."""
    rng = random.Random(6)
    out = {}
    table = screen.table
    for name, text, sort, desc in TICK_SETTINGS:
        screen.rowset.filter, screen.rowset.sort, screen.rowset.desc = text, sort, desc
        accounts = list(app.model.accounts.values())
        wires = [_deltas(accounts, app.model.seq + n * DELTAS, rng, app.clock()) for n in range(ticks)]
        times: list[float] = []
        cpu: list[float] = []
        began = time.perf_counter()
        for wire in wires:
            gc.collect()
            await asyncio.sleep(max(0.0, began + spacing - time.perf_counter()))
            began = started = time.perf_counter()
            used = time.process_time()
            for raw in wire:
                app.model.apply(msgspec.json.decode(raw))
            screen.repaint()
            _draw(table)
            times.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - used) * 1000)
        out[name] = {"times": times, "cpu": cpu, "rows": len(screen.rowset.rows)}
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(measure(json.loads(sys.argv[2])))))
