"""``tgdaemon demo`` in a real terminal (a pty): the dashboard comes up on the simulated fleet, and quitting it
stops the daemon and removes the demo's temporary directory."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from daemon_proc import isolated_env

WAIT_SECONDS = 60.0


def read_until(fd: int, wanted: bytes, seconds: float) -> bytes:
    """What the terminal showed, until ``wanted`` appears in it (or the time is up)."""
    seen = b""
    deadline = time.monotonic() + seconds
    while wanted not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:  # the other end closed
                break
    return seen


def test_quitting_the_dashboard_stops_the_demo_daemon(short_dir: Path) -> None:
    tmp = short_dir / "tmp"
    tmp.mkdir()
    env = isolated_env(short_dir, TMPDIR=str(tmp), TERM="xterm-256color", COLUMNS="120", LINES="40")
    master, slave = pty.openpty()
    demo = subprocess.Popen([sys.executable, "-m", "tgdaemon", "demo", "--accounts", "8"], env=env,
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    try:
        shown = read_until(master, b"sim-0008", WAIT_SECONDS)  # the accounts table, from the daemon's snapshot
        assert b"sim-0008" in shown, shown[-2000:].decode(errors="replace")
        [demo_dir] = tmp.glob("tgfleet-demo-*")
        assert (demo_dir / "tgdaemon.sock").exists()
        os.write(master, b"q")
        code = demo.wait(timeout=WAIT_SECONDS)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        os.close(master)
    assert code == 0
    assert not demo_dir.exists(), "the demo left its data dir (and so its daemon) behind"
