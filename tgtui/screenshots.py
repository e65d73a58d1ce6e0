"""``python -m tgtui.screenshots [DIR]``: the SVG screenshots in the docs, from a seeded simulator run.

It starts a daemon on the simulator (seed 1, 200 accounts, the setup pipeline
on, as ``make demo`` does) in a temporary directory, adds three quotas, lets
the fleet work for a while, then drives the dashboard headless and saves one
screenshot per view with Textual's ``save_screenshot``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from tgdaemon.control.client import ControlClient
from tgtui.app import FleetApp

CONFIG = """\
[setup]
enabled = true

[setup.profile]
first_name = "Fleet"
last_name = "Demo"
"""
QUOTAS = (
    {"name": "news-posts", "target": "@tgfleet_news", "action": "post_stats", "quantity": 400,
     "interval_seconds": 3, "expires_in_seconds": 7 * 86400},
    {"name": "markets-subs", "target": "@tgfleet_markets", "action": "channel_stats", "orders": 24,
     "interval_seconds": 3600, "expires_in_seconds": 86400},
    {"name": "typo", "target": "@tgfleet_nosuch", "action": "channel_stats", "orders": 5,
     "expires_in_seconds": 86400},
)
SIZE = (120, 32)
WORK_SECONDS = 45.0
SHOTS = (("accounts", ()), ("detail", ("j", "j", "enter")), ("quotas", ("escape", "tab")), ("tasks", ("tab",)),
         ("events", ("tab",)), ("pulse", ("tab",)), ("nodes", ("tab",)), ("help", ("question_mark",)))


async def _ready(socket_path: Path, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"screenshots: the daemon exited with {proc.returncode}")
        try:
            async with ControlClient(socket_path, timeout=2) as client:
                await client.status()
            return
        except Exception:
            await asyncio.sleep(0.1)
    raise SystemExit("screenshots: the daemon did not start")


async def shoot(out: Path, work: Path) -> None:
    sock = work / "d.sock"
    (work / "config.toml").write_text(CONFIG)
    cmd = [sys.executable, "-m", "tgdaemon", "run", "--simulate", "--seed", "1", "--accounts", "200",
           "--config", str(work / "config.toml"), "--data-dir", str(work / "data"), "--socket", str(sock),
           "--http", "127.0.0.1:0"]
    with (work / "daemon.log").open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        await _ready(sock, proc)
        async with ControlClient(sock) as client:
            for quota in QUOTAS:
                await client.request("POST", "/quotas", body=quota)
        await asyncio.sleep(WORK_SECONDS)
        app = FleetApp(sock)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(2.0)
            for name, keys in SHOTS:
                await pilot.press(*keys)
                await pilot.pause(1.0)
                app.save_screenshot(f"{name}.svg", str(out))
                print(f"screenshots: wrote {out / name}.svg")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tgtui.screenshots", description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tgshots-", dir="/tmp"))
    try:
        asyncio.run(shoot(args.out, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
