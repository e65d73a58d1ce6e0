"""Retention (issue 10 item 8) in the daemon: it prunes on its own and status shows the database; the batch
size follows the hold time. What pruning keeps and deletes, on both drivers, is in
tests/store/test_retention.py.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from daemon_proc import isolated_env, run_cli

from tgdaemon import config
from tgdaemon.retention import HOLD_TARGET_S, Retention
from tgdaemon.store import Store

DAY = 86400.0
WAIT = 10.0  # seconds a test waits at most for the daemon's own retention task


async def count(store: Store, table: str, where: str = "1") -> int:
    return next(iter(await store.read(f"SELECT COUNT(*) FROM {table} WHERE {where}")))[0]


async def test_the_daemon_prunes_on_its_own_and_status_shows_the_database(daemon_factory: Any,
                                                                          tmp_path: Path) -> None:
    async with daemon_factory(retention={"interval_seconds": 0.1, "events_days": 1}) as (daemon, client):
        store = daemon.runtime.store
        async with store.tx() as tx:  # the start-up's events too: events go from the oldest end only
            await tx.execute("UPDATE events SET at = ?", (time.time() - 3 * DAY,))
            await tx.conn.executemany("INSERT INTO events (at, kind, message) VALUES (?, 'ancient', 'x')",
                                      [(time.time() - 3 * DAY,)] * 5)
        deadline = time.monotonic() + WAIT
        while await count(store, "events", "kind = 'ancient'") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert await count(store, "events", "kind = 'ancient'") == 0
        status = await client.status()
        db = status["database"]
        assert db["file_bytes"] > 0 and db["path"].endswith("tgfleet.sqlite3")
        assert db["rows"]["accounts"] == 50 and db["rows"]["events"] == await count(store, "events")
        assert status["retention"]["events_days"] == 1 and status["retention"]["last_run"] is not None
        shown = await asyncio.to_thread(run_cli, "status", "--socket", str(daemon.cfg.socket_path()),
                                        env=isolated_env(tmp_path))
        assert shown.returncode == 0, shown.stderr
        [db_line] = [line for line in shown.stdout.splitlines() if line.startswith("database ")]
        assert " KiB + WAL " in db_line and "accounts 50" in db_line and "events " in db_line
        assert "retention  keeps events 1 d  finished tasks 14 d; last run " in shown.stdout


def test_the_batch_size_follows_the_hold_time_within_its_bounds(tmp_path: Path) -> None:
    """A batch that held the writer too long makes the next one smaller in proportion; a quick one doubles
    it; never above batch_size, never below a floor that still makes progress."""
    r = Retention(config.load(None, env={}, overrides={"retention": {"batch_size": 1000}}).retention,
                  None)  # type: ignore[arg-type]  # sizing touches no store
    assert r._next_size(400, HOLD_TARGET_S * 4) == 100
    assert r._next_size(400, HOLD_TARGET_S / 4) == 800
    assert r._next_size(800, HOLD_TARGET_S / 4) == 1000
    assert r._next_size(400, HOLD_TARGET_S * 0.75) == 400
    assert r._next_size(20, HOLD_TARGET_S * 100) == 10
