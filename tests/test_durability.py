"""Durability and write failures in-process: status names the synchronous mode, a disk error is one line, a 503
and a prompt stop with exit code 1, and a leftover thread never keeps the process alive. The store's own
side (synchronous=FULL by default, a failed store refuses writes and still closes) is in
tests/store/test_sqlite_only.py; the full-disk run against a daemon subprocess is in test_full_disk.py."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import STOP_TIMEOUT, build_config, start_in_process

from tgdaemon.control.client import ControlClient
from tgdaemon.errors import ApiError
from tgdaemon.gateway.simulator import Simulator
from tgdaemon.lifecycle.daemon import Daemon
from tgdaemon.lifecycle.datadir import LOCK_NAME
from tgdaemon.store.sqlite import SQLiteStore


async def pragma(conn: Any, name: str) -> int:
    return (await conn.execute_fetchall(f"PRAGMA {name}"))[0][0]


async def test_status_says_which_mode_the_daemon_runs(daemon_factory: Any) -> None:
    async with daemon_factory() as (_, client):
        assert (await client.status())["synchronous"] == "full"
    async with daemon_factory(store={"synchronous": "normal"}) as (daemon, client):
        assert (await client.status())["synchronous"] == "normal"
        assert await pragma(daemon.runtime.store._writer, "synchronous") == 1


async def test_a_write_error_is_a_503_one_line_and_a_prompt_stop_with_exit_code_1(
        tmp_path: Path, short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = build_config(tmp_path, short_dir / "d.sock")
    daemon = Daemon(cfg, Simulator(cfg.simulator), install_signal_handlers=False)
    task = await start_in_process(daemon)
    assert daemon.runtime is not None
    # What a file system remounted read-only after I/O errors answers: SQLITE_READONLY on the next write.
    await daemon.runtime.store._writer.execute("PRAGMA query_only = 1")
    caplog.set_level(logging.INFO)
    async with ControlClient(cfg.socket_path(), timeout=10) as client:
        with pytest.raises(ApiError) as refused:
            await client.request("POST", "/providers", body={"name": "acme"})
    assert refused.value.status == 503 and refused.value.code == "unavailable"
    assert "cannot be written" in str(refused.value) and "SQLITE_READONLY" in str(refused.value)
    assert await asyncio.wait_for(task, STOP_TIMEOUT) == 1
    said = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(said) == 1, [r.getMessage() for r in said]
    assert said[0].getMessage().startswith(f"cannot write the database: data dir {cfg.data_dir()}: ")
    assert not any(r.exc_info for r in caplog.records)
    fd = os.open(cfg.data_dir() / LOCK_NAME, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if the daemon still held it
    finally:
        os.close(fd)
    assert not cfg.socket_path().exists()
    store = await SQLiteStore.open(cfg.data_dir() / "tgfleet.sqlite3")  # nothing half-written: it opens as usual
    try:
        assert await store.count_accounts() > 0
    finally:
        await store.close()


def test_a_thread_left_behind_never_keeps_the_process_from_exiting(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import threading
        from tgdaemon.lifecycle import exitguard
        threading.Thread(target=threading.Event().wait, name="stuck sqlite").start()  # never ends, not a daemon
        exitguard.after_run(3, grace=0.2)
        print("last words", flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=20, check=False)
    assert done.returncode == 3, done.stderr
    assert done.stdout.strip() == "last words"
    assert "1 thread(s) still running after the event loop stopped (stuck sqlite)" in done.stderr
