"""Issue 10 item 10: a simulated data dir keeps its world across restarts.

Before, ``tgdaemon run --simulate`` on an existing data dir without the same
``--accounts`` built the default world of 200 accounts, and setup disabled
every stored account outside it with AUTH_KEY_UNREGISTERED, silently. Real
daemon subprocesses here, read through the CLI and the data dir's SQLite file;
the in-process tests use a real store and the real simulator.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_proc import READY_TIMEOUT, DaemonProc, Fleet, fleet, no_traceback, one_line

from tgdaemon import config
from tgdaemon.config import SimulatorConfig
from tgdaemon.errors import StoreError
from tgdaemon.gateway.simulator import Simulator
from tgdaemon.lifecycle import worlds
from tgdaemon.lifecycle.datadir import DB_NAME
from tgdaemon.store import Store

WORLD = 300
# Setup on and quick, and no simulated account dead or flaky: any account disabled is one the world lost.
CONFIG = """
[setup]
enabled = true
dispatch_interval_seconds = 1
[setup.retry]
backoff_seconds = [0.1]
max_attempts = 50
[setup.queues]
fast_concurrency = 64
[setup.profile]
first_name = "Fleet"
last_name = "World"
[limits]
flood_wait_jitter_seconds = 0
[simulator]
dead_fraction = 0.0
flood_wait_rate = 0.0
peer_flood_rate = 0.0
transient_rate = 0.0
"""
SETUP_TIMEOUT = 60.0


@pytest.fixture
def fl() -> Iterator[Fleet]:
    with fleet() as f:
        f.config.write_text(CONFIG)
        yield f


def db_rows(f: Fleet, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f.data_dir / DB_NAME, timeout=10)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def snapshot(f: Fleet) -> tuple[list[tuple[Any, ...]], ...]:
    """Everything a refused start could have touched."""
    return (db_rows(f, "SELECT * FROM accounts ORDER BY id"), db_rows(f, "SELECT * FROM meta ORDER BY key"),
            db_rows(f, "SELECT id, kind FROM events ORDER BY id"), db_rows(f, "SELECT * FROM account_tasks ORDER BY id"))


def accounts(f: Fleet) -> list[dict[str, Any]]:
    result = f.cli("accounts", "list", "--json", "--socket", str(f.socket_path))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_setup_everywhere(f: Fleet) -> list[dict[str, Any]]:
    """Until setup has finished (or disabled) every account that setup works on; bounded."""
    deadline = time.monotonic() + SETUP_TIMEOUT
    rows: list[dict[str, Any]] = []
    for _ in range(int(SETUP_TIMEOUT / 0.5) + 1):
        rows = accounts(f)
        workers = [a for a in rows if not a["is_probe"]]
        if workers and all(a["state"] == "disabled" or 0 < a["setup"]["done"] == a["setup"]["total"]
                           for a in workers):
            return rows
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    pytest.fail(f"setup did not reach every account within {SETUP_TIMEOUT:g} s: "
                f"{sum(a['setup']['done'] == a['setup']['total'] for a in rows)} of {len(rows)} done")


def up(daemon: DaemonProc) -> DaemonProc:
    """Ready, and past installing its signal handlers (the socket answers a little before: a SIGTERM then kills)."""
    daemon.wait_ready()
    deadline = time.monotonic() + READY_TIMEOUT
    for _ in range(int(READY_TIMEOUT / 0.05)):
        if "tgdaemon ready" in daemon.log() or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert "tgdaemon ready" in daemon.log(), daemon.log()
    return daemon


def refused_start(f: Fleet, *args: str, env: dict[str, str] | None = None) -> str:
    """A ``tgdaemon run`` that must refuse the data dir: its one line."""
    result = f.cli("run", "--simulate", "--data-dir", str(f.data_dir), "--socket", str(f.socket_path),
                   "--http", "127.0.0.1:0", "--config", str(f.config), *args, env=env)
    no_traceback(result)
    assert result.returncode == 1, (result.returncode, result.stderr)
    return one_line("\n".join(line for line in result.stderr.splitlines() if line.startswith("tgdaemon: ")))


def test_a_restart_without_accounts_keeps_the_world_and_a_different_one_is_refused(fl: Fleet) -> None:
    first = up(fl.start(accounts=WORLD))
    assert first.stop() == 0, first.log()
    assert "a new world of 300 accounts, seed 1" in first.log()
    before = snapshot(fl)

    # -- an explicit world that differs, from each place the operator can set it: one line, nothing changed
    line = refused_start(fl, "--accounts", "500")
    assert f"data dir {fl.data_dir} holds a simulated world of 300 accounts (seed 1)" in line, line
    assert "but the daemon was started with simulator.accounts = 500 (command line); drop it" in line, line
    line = refused_start(fl, "--seed", "2")
    assert "simulator.seed = 2 (command line)" in line, line
    line = refused_start(fl, env={"TGFLEET_SIMULATOR__ACCOUNTS": "500"})
    assert "simulator.accounts = 500 (environment TGFLEET_SIMULATOR__ACCOUNTS)" in line, line
    assert snapshot(fl) == before

    # -- the same world said out loud is no mismatch; saying nothing keeps the recorded one
    again = up(fl.start(accounts=WORLD))
    assert again.stop() == 0, again.log()
    kept = up(fl.start(accounts=None))
    assert "simulator: the world of 300 accounts, seed 1 (recorded in the data dir)" in kept.log()
    rows = wait_setup_everywhere(fl)
    assert len(rows) == WORLD
    assert [a["id"] for a in rows if a["state"] == "disabled"] == []
    assert [a["id"] for a in rows if a["last_error_code"]] == []
    assert "AUTH_KEY_UNREGISTERED" not in kept.log()
    assert kept.stop() == 0, kept.log()


def test_a_data_dir_from_before_worlds_were_recorded_gets_its_size_from_its_accounts(fl: Fleet) -> None:
    first = up(fl.start(accounts=WORLD))
    assert first.stop() == 0, first.log()
    db = sqlite3.connect(fl.data_dir / DB_NAME)
    with db:
        db.execute("DELETE FROM meta WHERE key = ?", (worlds.META_KEY,))  # as the data dirs of older releases
    db.close()

    daemon = up(fl.start(accounts=None))
    assert "simulator: the world of 300 accounts, seed 1 (inferred from the data dir's accounts)" in daemon.log()
    status = json.loads(fl.cli("status", "--json", "--socket", str(fl.socket_path)).stdout)
    assert status["simulator"]["accounts"] == WORLD
    assert daemon.stop() == 0, daemon.log()
    (recorded,) = db_rows(fl, f"SELECT value FROM meta WHERE key = '{worlds.META_KEY}'")
    assert json.loads(recorded[0])["accounts"] == WORLD
    line = refused_start(fl, "--accounts", "200")
    assert "holds a simulated world of 300 accounts" in line, line


# -- in process: a real store, the real simulator ----------------------------------------------------------------


def sim(chosen: dict[str, str] | None = None, **world: Any) -> Simulator:
    return Simulator(SimulatorConfig(**world), chosen=chosen)


async def seed(store: Store, simulator: Simulator) -> None:
    async with store.tx() as tx:
        await store.insert_accounts(tx, ({"phone": s.phone, "tg_user_id": s.tg_user_id, "label": s.label,
                                          "is_probe": int(s.is_probe), "profile_json": "{}"}
                                         for s in simulator.seeds()))


async def test_a_world_not_matching_its_accounts_records_the_configured_one_and_says_so(
        store: Store, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    await seed(store, sim(accounts=40, seed=7))  # an old data dir seeded under another seed
    configured = sim(accounts=40, seed=1)
    with caplog.at_level(logging.INFO, logger="tgdaemon.lifecycle.worlds"):
        await worlds.settle(store, configured, worlds.Place.data_dir(tmp_path))
    assert "its 40 accounts are not a simulated world of that size under seed 1" in caplog.text
    assert json.loads(await store.get_meta(worlds.META_KEY) or "{}")["seed"] == 1


async def test_the_recorded_world_replaces_defaults_but_not_choices(store: Store, tmp_path: Path) -> None:
    made = sim(accounts=30, seed=4, probe_fraction=0.1)
    await seed(store, made)
    async with store.tx() as tx:
        await worlds.record(store, tx, made.world())
    later = sim()  # all defaults: 200 accounts, seed 1
    await worlds.settle(store, later, worlds.Place.data_dir(tmp_path))
    assert later.world() == made.world()
    assert [a.tg_user_id for a in later.accounts] == [a.tg_user_id for a in made.accounts]
    with pytest.raises(StoreError, match=r"simulator\.probe_fraction = 0\.5 \(config /x\.toml\)"):
        await worlds.settle(store, sim({"probe_fraction": "config /x.toml"}, probe_fraction=0.5),
                            worlds.Place.data_dir(tmp_path))


def test_config_says_where_each_key_came_from(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[simulator]\nseed = 3\n")
    cfg, origins = config.load_with_origins(path, env={"TGFLEET_SIMULATOR__ACCOUNTS": "5", "TGFLEET_DATA_DIR": "/d"},
                                            overrides={"simulator": {"probe_fraction": 0.5}})
    assert (cfg.simulator.seed, cfg.simulator.accounts) == (3, 5)
    assert origins == {"simulator.seed": f"config {path}", "simulator.accounts": "environment TGFLEET_SIMULATOR__ACCOUNTS",
                       "daemon.data_dir": "environment TGFLEET_DATA_DIR", "simulator.probe_fraction": "command line"}
