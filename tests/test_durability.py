"""Durability and write failures in-process: synchronous=FULL by default, a disk error is one line, a 503
and a prompt stop with exit code 1, a failed store refuses writes and still closes, and a leftover thread
never keeps the process alive. The full-disk run against a daemon subprocess is in test_full_disk.py."""

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

from tests.conftest import STOP_TIMEOUT, build_config, start_in_process
from tgdaemon.control.client import ControlClient
from tgdaemon.errors import ApiError, StoreUnavailable
from tgdaemon.gateway.simulator import Simulator
from tgdaemon.lifecycle.daemon import Daemon
from tgdaemon.lifecycle.datadir import LOCK_NAME
from tgdaemon.store.sqlite import SQLiteStore


async def pragma(conn: Any, name: str) -> int:
    return (await conn.execute_fetchall(f"PRAGMA {name}"))[0][0]


@pytest.mark.parametrize(("mode", "level"), [(None, 2), ("full", 2), ("normal", 1)])
async def test_the_store_runs_synchronous_full_unless_told_normal(tmp_path: Path, mode: str | None,
                                                                  level: int) -> None:
    path = tmp_path / "db.sqlite3"
    store = await (SQLiteStore.open(path) if mode is None else SQLiteStore.open(path, mode))
    try:
        assert await pragma(store._writer, "synchronous") == level  # 2 = FULL, 1 = NORMAL
        assert await pragma(store._reader, "synchronous") == level
        assert await pragma(store._writer, "journal_mode") == "wal"
    finally:
        await store.close()


async def test_status_says_which_mode_the_daemon_runs(daemon_factory: Any) -> None:
    async with daemon_factory() as (_, client):
        assert (await client.status())["synchronous"] == "full"
    async with daemon_factory(store={"synchronous": "normal"}) as (daemon, client):
        assert (await client.status())["synchronous"] == "normal"
        assert await pragma(daemon.runtime.store._writer, "synchronous") == 1


async def test_a_disk_error_refuses_later_writes_at_once_and_the_store_still_closes(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "data" / "db.sqlite3")
    told: list[str] = []
    store.on_failure = told.append
    writer, reader = store._writer, store._reader
    pages = await pragma(writer, "page_count")
    await writer.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own SQLITE_FULL at the current size
    with pytest.raises(StoreUnavailable) as caught:
        for i in range(10_000):  # bounded: a few hundred 1 KB events fill the last free pages
            async with store.tx() as tx:
                await tx.event("test.fill", "x" * 1024, data={"i": i})
    assert len(told) == 1 and f"data dir {tmp_path / 'data'}" in told[0] and "(SQLITE_FULL)" in told[0]
    assert "the daemon is stopping" in str(caught.value)
    await writer.execute(f"PRAGMA max_page_count = {pages * 100}")  # the disk is back, but this store stays failed
    with pytest.raises(StoreUnavailable):
        async with store.tx() as tx:
            await tx.event("test.after", "refused before it reaches SQLite")
    assert list(await store.read("SELECT COUNT(*) FROM events WHERE kind = 'test.after'"))[0][0] == 0
    assert len(told) == 1
    await asyncio.wait_for(store.close(), 10)
    assert not writer._thread.is_alive() and not reader._thread.is_alive()


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
