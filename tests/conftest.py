"""Shared fixtures: a real daemon on the simulator, reachable over a real Unix socket.

``running_daemon`` is the one most tests want::

    async def test_something(running_daemon):
        daemon, client = running_daemon
        status = await client.status()          # tgdaemon.control.client.ControlClient over the socket
        daemon.runtime.store / daemon.runtime.hub  # the daemon's own parts, in-process

It is the real ``tgdaemon.lifecycle.daemon.Daemon`` serving the real aiohttp
application on a short socket path under /tmp (AF_UNIX paths are limited to
108 bytes, pytest's tmp_path can be longer) and on ``127.0.0.1:0`` (the bound
address is ``daemon.runtime.http_bound``), with a fresh data dir in tmp_path
and the ``Simulator`` gateway: 50 accounts, no latency, seed 1.

PostgreSQL: ``pg_server`` is the session's server (pgtest.py), ``daemon_store`` runs a test once per
store (None: the data dir's SQLite file; else a fresh database's URL) for ``daemon_proc.fleet(store=...)``.

For other settings use ``daemon_factory``, an async context manager taking
config overrides per section (merged over the defaults above)::

    async def test_small_queue(daemon_factory):
        async with daemon_factory(daemon={"stream_queue_size": 100}) as (daemon, client):
            ...
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pgtest
import pytest
import tgscript as ts
from telethon import TelegramClient

from tgdaemon import config
from tgdaemon.control.client import ControlClient
from tgdaemon.gateway.simulator import Simulator
from tgdaemon.lifecycle.daemon import Daemon
from tgdaemon.store import Store
from tgdaemon.store.sqlite import SQLiteStore

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
FLEET_SIZE = 50


async def start_in_process(daemon: Daemon) -> asyncio.Task[int]:
    """Run the daemon as a task of this loop and wait until it is ready; its start-up error, if any, is raised."""
    task = asyncio.create_task(daemon.run(), name="test-daemon")
    ready = asyncio.create_task(daemon.ready.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    if ready not in done:
        ready.cancel()
        if task in done:
            task.result()
        task.cancel()
        raise AssertionError(f"daemon not ready within {START_TIMEOUT}s")
    return task


@pytest.fixture
def short_dir() -> Any:
    """A short private directory under /tmp, for Unix socket paths; removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="tgf", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def build_config(tmp_path: Path, socket_path: Path, **sections: dict[str, Any]) -> config.Config:
    """The test daemon's config: an empty config file, no environment, these overrides."""
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    overrides: dict[str, dict[str, Any]] = {
        "daemon": {"data_dir": str(tmp_path / "data"), "socket": str(socket_path), "http": "127.0.0.1:0"},
        "simulator": {"accounts": FLEET_SIZE, "latency_min_ms": 0, "latency_max_ms": 0},
    }
    for section, values in sections.items():
        overrides[section] = {**overrides.get(section, {}), **values}
    return config.load(empty, env={}, overrides=overrides)


@pytest.fixture
def daemon_factory(tmp_path: Path, short_dir: Path) -> Callable[..., Any]:
    """``async with daemon_factory(**sections) as (daemon, client)``: start, wait ready, stop, await exit."""

    @contextlib.asynccontextmanager
    async def start(**sections: dict[str, Any]) -> AsyncIterator[tuple[Daemon, ControlClient]]:
        cfg = build_config(tmp_path, short_dir / "d.sock", **sections)
        daemon = Daemon(cfg, Simulator(cfg.simulator), install_signal_handlers=False)
        task = await start_in_process(daemon)
        client = ControlClient(cfg.socket_path(), timeout=10)
        try:
            yield daemon, client
        finally:
            await client.close()
            daemon.stop()
            exit_code = await asyncio.wait_for(task, STOP_TIMEOUT)
            assert exit_code == 0
            assert not cfg.socket_path().exists(), "the daemon left its socket behind"

    return start


@pytest.fixture
async def running_daemon(daemon_factory: Callable[..., Any]) -> AsyncIterator[tuple[Daemon, ControlClient]]:
    """(daemon, ControlClient) for a real daemon on the simulator (50 accounts, latency 0); see module doc."""
    async with daemon_factory() as pair:
        yield pair


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A real store in a fresh SQLite file, at the latest schema."""
    s = await SQLiteStore.open(tmp_path / "data" / "tgfleet.sqlite3")
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pgtest.PgServer]:
    """The session's PostgreSQL server (pgtest.py): started on first use only, so a SQLite-only
    selection never starts it."""
    with pgtest.session_server() as server:
        yield server


@pytest.fixture(params=pgtest.STORES)
def daemon_store(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Runs the test once per store: None (the data dir's SQLite file) and a fresh PostgreSQL database's
    URL, for ``fleet(store=...)``. Never skipped: a driver that does not work fails its tests."""
    with pgtest.store_url(request.param, request) as url:
        yield url


@pytest.fixture(autouse=True)
def _fresh_telethon_class_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """TelegramClient caches help.getConfig on the class: keep tests independent."""
    monkeypatch.setattr(TelegramClient, "_config", None)

GatewayFactory = Callable[..., Awaitable[ts.ScriptedGateway]]


@pytest.fixture
async def gateways(store: Store) -> AsyncIterator[GatewayFactory]:
    """``await gateways(**telegram_overrides)``: a started ScriptedGateway on the test's store; at teardown
    each is closed and checked: every scripted answer used, nothing left connected."""
    made: list[ts.ScriptedGateway] = []

    async def new(**overrides: Any) -> ts.ScriptedGateway:
        overrides.setdefault("idle_disconnect_seconds", 3600.0)  # the gateway's own reaper must not interfere
        gw = ts.ScriptedGateway(ts.telegram_config(**overrides))
        await gw.start(store)
        made.append(gw)
        return gw

    try:
        yield new
    finally:
        for gw in made:
            await gw.close()
        for gw in made:
            gw.assert_clean()
            assert gw.pool.connected() == 0
            assert all(not sender.is_connected() for sender in gw.all_senders)
