"""A data dir that fills up under load: the daemon says why in one line, exits non-zero within 10 s with
its lock released, loses nothing it acknowledged, and starts normally once space is freed.

The data dir is a small tmpfs (mounting one needs root, which the test machines and CI have; elsewhere
the test is skipped and says why). A provider pulls and reports over HTTP and setup runs while a filler
file takes the last free byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import re
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from daemon_proc import DaemonProc, Fleet, fleet

from tgdaemon.control.client import ControlClient
from tgdaemon.lifecycle.datadir import DB_NAME, LOCK_NAME

TMPFS_MB = 24
ACCOUNTS = 120
QUOTAS = 30
WORKERS = 4
FAIL_WAIT_S = 60.0  # from a full disk to the daemon's first failed write: the WAL's own slack runs out first
EXIT_WAIT_S = 10.0  # the promise: stopped within 10 s of that write
CONFIG = """
[quotas]
generate_interval_seconds = 0.2
pace_seconds = 0
local_concurrency = 0
reaper_interval_seconds = 0.5
lease_seconds = 5
daily_cap = 1000000
[setup]
enabled = true
dispatch_interval_seconds = 1
[setup.queues]
fast_concurrency = 2
[setup.profile]
first_name = "Full"
last_name = "Disk"
[simulator]
probe_fraction = 0.05
dead_fraction = 0.0
flood_wait_rate = 0.0
peer_flood_rate = 0.0
transient_rate = 0.0
"""
SLOW_SIM = {"TGFLEET_SIMULATOR__LATENCY_MIN_MS": "20", "TGFLEET_SIMULATOR__LATENCY_MAX_MS": "40"}


@pytest.fixture
def tmpfs() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the data dir needs root")
    mount = Path(tempfile.mkdtemp(prefix="tgf-tmpfs-", dir="/tmp"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        mount.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30, check=False)
        with contextlib.suppress(OSError):
            mount.rmdir()


@pytest.fixture
def fl() -> Iterator[Fleet]:
    with fleet() as f:
        yield f


def fill(path: Path) -> int:
    """Write ``path`` until the file system has no byte left; bytes written. Bounded by the tmpfs's size."""
    written = 0
    with path.open("wb", buffering=0) as out:
        for chunk in (1 << 20, 1 << 12, 1):
            for _ in range((TMPFS_MB << 20) // chunk + 2):
                try:
                    written += out.write(b"\0" * chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    return written


class Provider:
    """Pulls and reports as fast as the daemon answers; remembers every report the daemon said was applied."""

    def __init__(self, http: aiohttp.ClientSession, base: str, token: str) -> None:
        self.http = http
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}"}
        self.applied: dict[int, int] = {}  # task id -> the subscribers it reported
        self.statuses: list[int] = []
        self.bodies_5xx: list[Any] = []

    async def post(self, route: str, body: Any) -> tuple[int, Any]:
        async with self.http.post(f"{self.base}/api/provider/telegram/tasks/{route}", json=body,
                                  headers=self.headers) as resp:
            self.statuses.append(resp.status)
            answer = await resp.json(content_type=None)
            if resp.status >= 500:
                self.bodies_5xx.append(answer)
            return resp.status, answer

    async def work(self, until: float) -> None:
        for _ in range(100_000):
            if time.monotonic() > until:
                return
            try:
                status, body = await self.post("pull", {"limit": 10})
                if status != 200:
                    await asyncio.sleep(0.05)
                    continue
                reports = [{"status": "done", "task_id": t["task_id"], "lease_token": t["lease_token"],
                            "result": {"subscribers": 1000 + t["task_id"], "title": "Markets"}} for t in body["tasks"]]
                if not reports:
                    await asyncio.sleep(0.02)
                    continue
                status, answer = await self.post("report", reports)
                if status == 200:
                    for result in answer["results"]:
                        if result["outcome"] == "applied":
                            self.applied[result["task_id"]] = 1000 + result["task_id"]
            except (aiohttp.ClientError, asyncio.TimeoutError, json.JSONDecodeError):
                return  # the daemon is gone


async def prepare(daemon: DaemonProc) -> tuple[str, str]:
    """A provider owning every worker account, and channel_stats quotas for it; (http address, token)."""
    async with ControlClient(daemon.socket_path, timeout=30) as control:
        token = (await control.request("POST", "/providers", body={"name": "p1"}))["token"]
        ids = [a["id"] for a in await control.all_accounts() if not a["is_probe"]]
        await control.request("POST", "/accounts/assign", body={"ids": ids, "executor": "p1"})
        for i in range(QUOTAS):
            await control.request("POST", "/quotas", body={
                "name": f"subs {i}", "target": "@tgfleet_markets", "action": "channel_stats", "orders": 1_000_000,
                "interval_seconds": 1, "expires_in_seconds": 86400})
        return (await control.status())["http"], token


def lock_is_free(data_dir: Path) -> tuple[bool, str]:
    """(the flock can be taken, what the lock file says): a daemon that let go in order leaves it empty."""
    fd = os.open(data_dir / LOCK_NAME, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False, ""
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True, os.pread(fd, 64, 0).decode()
    finally:
        os.close(fd)


def wait_for_line(daemon: DaemonProc, pattern: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds / 0.05) + 1):
        if found := re.search(pattern, daemon.log()):
            return found.group(0)
        if daemon.returncode is not None or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    pytest.fail(f"no line matching {pattern!r} within {seconds:.0f} s; log:\n{daemon.log()[-4000:]}", pytrace=False)


def invariants(db: Path, applied: dict[int, int]) -> None:
    """What the accounting promises, read straight from the database once the daemon has stopped."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        tasks = {r["id"]: r for r in conn.execute("SELECT id, status FROM tasks")}
        measured = {r["task_id"]: r["subscribers"] for r in conn.execute("SELECT task_id, subscribers FROM measurements")}
        lost = [t for t in applied if t not in tasks or tasks[t]["status"] != "done"]
        assert not lost, f"{len(lost)} reports acknowledged as applied are not done in the database: {lost[:10]}"
        wrong = [t for t, subs in applied.items() if measured.get(t) != subs]
        assert not wrong, f"{len(wrong)} applied reports lack their measurement: {wrong[:10]}"
        done = conn.execute("SELECT COUNT(*) FROM tasks WHERE status = 'done'").fetchone()[0]
        assert conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == done
        assert conn.execute("SELECT COALESCE(SUM(used), 0) FROM usage").fetchone()[0] == done
        for q in conn.execute("SELECT id, quantity_total, orders_left, (SELECT COUNT(*) FROM tasks t WHERE"
                              " t.subject_id = q.id AND t.status = 'done') AS done FROM quotas q"):
            assert q["orders_left"] == q["quantity_total"] - q["done"], dict(q)
        doubles = conn.execute("SELECT COUNT(*) FROM (SELECT account_id FROM tasks WHERE status IN ('pending',"
                               " 'leased') GROUP BY account_id HAVING COUNT(*) > 1)").fetchone()[0]
        assert doubles == 0, "an account holds two open tasks"
        stale = conn.execute("SELECT COUNT(*) FROM tasks WHERE status = 'leased' AND lease_expires_at < ?",
                             (time.time() - 3.0,)).fetchone()[0]
        assert stale == 0, "leases expired for longer than the reaper's interval were not reaped"
        assert conn.execute("SELECT COUNT(*) FROM account_tasks WHERE status = 'running'").fetchone()[0] == 0
    finally:
        conn.close()


async def test_a_full_disk_stops_the_daemon_promptly_and_loses_nothing_acknowledged(fl: Fleet, tmpfs: Path) -> None:
    fl.config.write_text(CONFIG)
    data_dir = tmpfs / "data"
    daemon = fl.start(data_dir=data_dir, accounts=ACCOUNTS, env=SLOW_SIM)
    await daemon.await_ready()
    http_at, token = await prepare(daemon)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        providers = [Provider(http, f"http://{http_at}", token) for _ in range(WORKERS)]
        until = time.monotonic() + FAIL_WAIT_S + EXIT_WAIT_S + 10
        load = asyncio.gather(*(p.work(until) for p in providers))
        for _ in range(200):  # until reports are being applied (bounded: 10 s)
            if sum(len(p.applied) for p in providers) >= 50:
                break
            await asyncio.sleep(0.05)
        assert sum(len(p.applied) for p in providers) >= 50, daemon.log()[-3000:]
        filler = tmpfs / "filler"
        assert await asyncio.to_thread(fill, filler) > 0
        line = await asyncio.to_thread(wait_for_line, daemon, r".*cannot write the database.*", FAIL_WAIT_S)
        code = await asyncio.to_thread(daemon.wait_exit, EXIT_WAIT_S)
        await asyncio.wait_for(load, 30)
    log = daemon.log()
    assert code != 0
    assert f"data dir {data_dir}" in line and re.search(r"\(SQLITE_(FULL|IOERR\w*)\)", line), line
    assert log.count("cannot write the database") == 1, log[-4000:]
    assert "Traceback" not in log, log[-4000:]
    assert lock_is_free(data_dir) == (True, ""), "the lock was not released in order"
    statuses = [s for p in providers for s in p.statuses]
    assert 500 not in statuses, [b for p in providers for b in p.bodies_5xx][:3]
    assert all(b["error"]["code"] == "unavailable" for p in providers for b in p.bodies_5xx)
    applied = {t: s for p in providers for t, s in p.applied.items()}

    still_full = fl.start(data_dir=data_dir, accounts=ACCOUNTS, env=SLOW_SIM)  # what systemd's restart meets
    assert await asyncio.to_thread(still_full.wait_exit, FAIL_WAIT_S) != 0
    said = [line for line in still_full.log().splitlines() if "ERROR" in line or line.startswith("tgdaemon:")]
    assert len(said) == 1 and str(data_dir) in said[0], still_full.log()[-4000:]
    assert "Traceback" not in still_full.log() and lock_is_free(data_dir)[0]

    filler.unlink()  # space is back: the daemon starts as usual and serves the provider again
    again = fl.start(data_dir=data_dir, accounts=ACCOUNTS, env=SLOW_SIM)
    await again.await_ready()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        after = Provider(http, f"http://{http_at.rsplit(':', 1)[0]}:0", token)
        async with ControlClient(again.socket_path, timeout=30) as control:
            after.base = f"http://{(await control.status())['http']}"
        await after.work(time.monotonic() + 8)  # past the old leases (5 s) and a few reaper rounds
    assert after.applied and 500 not in after.statuses
    assert await again.astop() == 0
    assert "Traceback" not in again.log()
    invariants(data_dir / DB_NAME, {**applied, **after.applied})
