"""Issue 10 item 9: ``tgdaemon backup PATH``, an online copy of the database, and a restore from it.

The end-to-end test takes backups of a real daemon subprocess while a provider
pulls and reports over HTTP and setup runs, checks the copy with SQLite
(integrity, the accounting invariants, counts that fit the moment of the
backup), and then starts a second daemon on a data dir holding the copy. The
in-process tests cover the route's refusals; a copy that fails half way is in
tests/store/test_sqlite_only.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from daemon_proc import Fleet, fleet, isolated_env, no_traceback, one_line

from tgdaemon.control.client import ControlClient
from tgdaemon.errors import ApiError
from tgdaemon.lifecycle.datadir import DB_NAME
from tgdaemon.quotas.messages import PullResponse

PULL = "/api/provider/telegram/tasks/pull"
REPORT = "/api/provider/telegram/tasks/report"
LOAD_TIMEOUT = 30.0
CONFIG = """
[quotas]
generate_interval_seconds = 0.2
pace_seconds = 0
[limits]
flood_wait_jitter_seconds = 0
[setup]
enabled = true
dispatch_interval_seconds = 1
[setup.retry]
backoff_seconds = [0.1]
[setup.profile]
first_name = "Fleet"
last_name = "Backup"
[simulator]
probe_fraction = 0.1
dead_fraction = 0.0
flood_wait_rate = 0.0
peer_flood_rate = 0.0
transient_rate = 0.0
post_interval_seconds = 1
"""
QUANTITY = 100_000  # never used up here: the counter must equal total minus done tasks
QUOTAS = 24  # a quota makes one task per run, at most one run a second: many quotas make the load


class LoadProvider:
    """A provider pulling and reporting every task done, as fast as it can, until stopped.

    ``sent`` counts done reports put on the wire, ``applied`` those the daemon answered "applied": a
    report committed before a snapshot was sent before it, and one applied before a backup was asked
    for was committed before it.
    """

    def __init__(self, http: aiohttp.ClientSession, base: str, token: str) -> None:
        self.http, self.base, self.token = http, base, token
        self.sent = 0
        self.applied = 0
        self.stop = asyncio.Event()

    async def post(self, path: str, body: Any) -> Any:
        async with self.http.post(self.base + path, json=body,
                                  headers={"Authorization": f"Bearer {self.token}"}) as resp:
            assert resp.status == 200, (resp.status, await resp.text())
            return await resp.json()

    async def run(self) -> None:
        deadline = time.monotonic() + 4 * LOAD_TIMEOUT
        while not self.stop.is_set() and time.monotonic() < deadline:
            tasks = msgspec.convert(await self.post(PULL, {"limit": 20}), PullResponse).tasks
            if not tasks:
                await asyncio.sleep(0.05)
                continue
            reports = [{"status": "done", "task_id": t.task_id, "lease_token": t.lease_token,
                        "result": {"views": 100 + (t.post_id or 0), "forwards": 1, "replies": 0, "reactions": 2}}
                       for t in tasks]
            self.sent += len(reports)
            answer = await self.post(REPORT, reports)
            self.applied += sum(r["outcome"] == "applied" for r in answer["results"])

    async def until(self, applied: int) -> None:
        deadline = time.monotonic() + LOAD_TIMEOUT
        for _ in range(int(LOAD_TIMEOUT / 0.05)):
            if self.applied >= applied or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert self.applied >= applied, f"only {self.applied} reports applied within {LOAD_TIMEOUT:g} s"


def cli_json(f: Fleet, *args: str, socket_path: Path | None = None) -> Any:
    result = f.cli(*args, "--json", "--socket", str(socket_path or f.socket_path))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def cli_ok(f: Fleet, *args: str, socket_path: Path | None = None) -> str:
    result = f.cli(*args, "--socket", str(socket_path or f.socket_path))
    assert result.returncode == 0, result.stderr
    return result.stdout


def cli_refused(f: Fleet, *args: str, socket_path: Path, code: int = 1) -> str:
    """The one line of a refused backup: exit 2 for a path the daemon finds wrong (its 400), else 1."""
    result = f.cli(*args, "--socket", str(socket_path))
    no_traceback(result)
    assert result.returncode == code and not result.stdout, (result.returncode, result.stdout, result.stderr)
    return one_line(result.stderr)


def read_copy(path: Path, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def check_copy(path: Path) -> int:
    """The copy is whole and its books balance; the number of done tasks it holds."""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_copy(path, "PRAGMA integrity_check") == [("ok",)]
    assert read_copy(path, "PRAGMA journal_mode") == [("delete",)]  # one file: no -wal to carry along
    assert read_copy(path, "SELECT COUNT(*) FROM tasks t WHERE t.status = 'done' AND NOT EXISTS"
                           " (SELECT 1 FROM measurements m WHERE m.task_id = t.id)") == [(0,)]
    books = read_copy(path, "SELECT q.quantity_total - q.quantity_left,"
                            " (SELECT COUNT(*) FROM tasks t WHERE t.subject_id = q.id AND t.status = 'done'),"
                            " (SELECT COUNT(*) FROM measurements m WHERE m.quota_id = q.id) FROM quotas q")
    assert len(books) == QUOTAS and all(used == done == measured for used, done, measured in books), books
    done = sum(row[1] for row in books)
    assert read_copy(path, "SELECT COALESCE(SUM(used), 0) FROM usage") == [(done,)]
    return done


async def backup_under_load(f: Fleet, load: LoadProvider, path: Path) -> dict[str, Any]:
    applied_before = load.applied
    result = await asyncio.to_thread(f.cli, "backup", str(path), "--json", "--socket", str(f.socket_path))
    sent_after = load.sent
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["path"] == str(path) and answer["bytes"] == path.stat().st_size and answer["seconds"] >= 0
    done = check_copy(path)
    assert applied_before <= done <= sent_after, (applied_before, done, sent_after)
    return answer


async def test_a_backup_under_load_is_consistent_and_a_daemon_started_on_it_serves_the_fleet() -> None:
    with fleet() as f:
        f.config.write_text(CONFIG)
        daemon = await f.start(accounts=40).await_ready()
        status = cli_json(f, "status")
        token = cli_ok(f, "providers", "add", "acme").strip()
        workers = [str(a["id"]) for a in cli_json(f, "accounts", "list") if not a["is_probe"]]
        cli_ok(f, "accounts", "assign", *workers, "--executor", "acme")
        async with ControlClient(f.socket_path) as client:
            for i in range(QUOTAS):
                await client.request("POST", "/quotas", body={
                    "name": f"q{i}", "target": f"@{status['simulator']['channels'][i % 4]}", "action": "post_stats",
                    "last_n_posts": 20, "quantity": QUANTITY, "interval_seconds": 1, "expires_in_seconds": 3600})
        backups = f.root / "backups"
        backups.mkdir()
        async with aiohttp.ClientSession() as http:
            load = LoadProvider(http, f"http://{status['http']}", token)
            pulling = asyncio.create_task(load.run())
            try:
                await load.until(100)
                await backup_under_load(f, load, backups / "one.sqlite3")
                await load.until(load.applied + 100)  # writes went on
                await backup_under_load(f, load, backups / "two.sqlite3")
                await load.until(load.applied + 20)
            finally:
                load.stop.set()
                await asyncio.wait_for(pulling, LOAD_TIMEOUT)
        assert sorted(p.name for p in backups.iterdir()) == ["one.sqlite3", "two.sqlite3"]  # no temporary left
        live_done = sum(q["quantity_total"] - q["quantity_left"] for q in cli_json(f, "quotas", "list"))
        assert live_done > check_copy(backups / "two.sqlite3")
        events = cli_json(f, "events", "--limit", "5000")
        assert sum(e["kind"] == "store.backup" for e in events) == 2
        assert "Traceback" not in daemon.log()
        assert await daemon.astop(signal.SIGTERM) == 0

        # -- restore: a fresh data dir holding the copy, and nothing else, serves the fleet as it was
        copy = backups / "two.sqlite3"
        restored = f.root / "restored"
        restored.mkdir(mode=0o700)
        shutil.copy2(copy, restored / DB_NAME)
        socket2 = f.root / "r.sock"
        again = await f.start(accounts=None, data_dir=restored, socket_path=socket2).await_ready()
        assert "simulator: the world of 40 accounts, seed 1 (recorded in the data dir)" in again.log()
        status2 = cli_json(f, "status", socket_path=socket2)
        assert status2["data_dir"] == str(restored)
        assert read_copy(copy, "SELECT value FROM meta WHERE key = 'stream.epoch'") == []
        # a restored copy's log is a new one: a dashboard that saw the live log resyncs, never resumes
        assert status2["stream"]["epoch"] != status["stream"]["epoch"]
        rows = cli_json(f, "accounts", "list", socket_path=socket2)
        copied = read_copy(copy, "SELECT id, label, executor FROM accounts ORDER BY id")
        assert [(a["id"], a["label"], a["executor"]) for a in rows] == [tuple(r) for r in copied]
        assert all(a["state"] != "disabled" for a in rows)
        left = read_copy(copy, "SELECT id, quantity_left FROM quotas ORDER BY id")
        assert [(q["id"], q["quantity_left"]) for q in cli_json(f, "quotas", "list", socket_path=socket2)] == left
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get(f"http://{status2['http']}/api/provider/whoami", headers=headers) as resp:
                assert resp.status == 200 and (await resp.json())["provider"] == "acme"
            async with http.post(f"http://{status2['http']}{PULL}", json={"limit": 5}, headers=headers) as resp:
                assert resp.status == 200, await resp.text()

        # -- the CLI's refusals, one line each, and what it resolves
        before = copy.read_bytes()
        line = cli_refused(f, "backup", str(copy), socket_path=socket2)
        assert line == f"tgdaemon: backup {copy}: the file exists; choose another name, or pass --force to replace it"
        assert copy.read_bytes() == before
        line = cli_refused(f, "backup", str(f.root / "nowhere" / "x.sqlite3"), socket_path=socket2, code=2)
        assert line == f"tgdaemon: backup {f.root / 'nowhere' / 'x.sqlite3'}: directory {f.root / 'nowhere'} does" \
                       " not exist"
        line = cli_refused(f, "backup", str(restored / DB_NAME), "--force", socket_path=socket2, code=2)
        assert "one of the running daemon's own files" in line
        replaced = cli_json(f, "backup", str(copy), "--force", socket_path=socket2)
        assert replaced["path"] == str(copy) and read_copy(copy, "PRAGMA integrity_check") == [("ok",)]
        relative = subprocess.run([sys.executable, "-m", "tgdaemon", "backup", "rel.sqlite3", "--socket", str(socket2)],
                                  cwd=backups, env=f.env, capture_output=True, text=True, timeout=30,
                                  stdin=subprocess.DEVNULL, check=False)
        assert relative.returncode == 0, relative.stderr
        assert relative.stdout.startswith(f"backup written to {backups / 'rel.sqlite3'}: ")
        assert relative.stdout.rstrip().endswith(" s") and " kB in " in relative.stdout
        assert stat.S_IMODE((backups / "rel.sqlite3").stat().st_mode) == 0o600
        assert await again.astop(signal.SIGTERM) == 0


async def test_the_route_refuses_every_bad_target_before_writing(running_daemon: Any, tmp_path: Path) -> None:
    daemon, client = running_daemon
    data_dir = daemon.cfg.data_dir()
    taken = tmp_path / "taken.sqlite3"
    taken.write_text("not a database")

    async def refused(body: dict[str, Any]) -> tuple[int, str, str]:
        with pytest.raises(ApiError) as info:
            await client.request("POST", "/backup", body=body)
        return info.value.status, info.value.code, str(info.value)

    assert await refused({"path": "relative.sqlite3"}) == (
        400, "invalid_path", "backup relative.sqlite3: the path must be absolute")
    assert (await refused({"path": str(tmp_path / "no" / "b")}))[:2] == (400, "invalid_path")
    assert await refused({"path": str(tmp_path), "force": True}) == (
        400, "invalid_path", f"backup {tmp_path}: that is a directory; name the file to write")
    for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", "tgdaemon.lock"):
        status, code, message = await refused({"path": str(data_dir / name), "force": True})
        assert (status, code) == (400, "invalid_path") and "running daemon's own files" in message, message
    assert (await refused({"path": str(taken)}))[:2] == (409, "backup_exists")
    assert (await refused({"path": str(tmp_path / "b"), "extra": 1}))[:2] == (400, "invalid_body")
    assert (await refused({"path": str(tmp_path / "b\x00")}))[:2] == (400, "invalid_body")  # no NUL in any text
    too_long = await refused({"path": str(tmp_path / ("a" * 300))})  # pathlib raises ENAMETOOLONG itself
    assert too_long[:2] == (400, "invalid_path") and "too long" in too_long[2], too_long
    assert taken.read_text() == "not a database"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["taken.sqlite3", "data", "empty.toml"])

    answer = await client.request("POST", "/backup", body={"path": str(taken), "force": True})
    assert answer["path"] == str(taken) and answer["bytes"] == taken.stat().st_size
    assert read_copy(taken, "SELECT COUNT(*) FROM accounts") == [(50,)]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare(1) for a mount namespace of its own")
async def test_the_cli_says_so_when_the_daemon_wrote_where_this_shell_cannot_see(
        running_daemon: Any, tmp_path: Path) -> None:
    """As under systemd's PrivateTmp: here the CLI runs in a mount namespace with a tmpfs over the directory."""
    daemon, _ = running_daemon
    private = tmp_path / "private"
    private.mkdir()
    target = private / "b.sqlite3"
    cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", 'mount -t tmpfs none "$0" && exec "$@"',
           str(private), sys.executable, "-m", "tgdaemon", "backup", str(target), "--socket",
           str(daemon.cfg.socket_path())]
    result = await asyncio.to_thread(subprocess.run, cmd, env=isolated_env(tmp_path), capture_output=True, text=True,
                                     timeout=30, stdin=subprocess.DEVNULL, check=False)
    no_traceback(result)
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert one_line(result.stderr) == (
        f"tgdaemon: backup {target}: the daemon wrote it, but this shell cannot see it: the daemon has a file system"
        " view of its own (systemd PrivateTmp, a container); write it under the data dir or a ReadWritePaths"
        " directory instead")
    assert read_copy(target, "PRAGMA integrity_check") == [("ok",)]  # where the daemon sees it
