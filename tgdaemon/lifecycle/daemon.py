"""The daemon's life: start the parts in order, run until asked to stop, stop them in reverse.

Shaped after procrastinate's worker: side tasks are watched, and one that
fails stops the daemon with an error (systemd restarts it) rather than
leaving a half-working process; a stop signal lets in-flight work finish or
release it within ``daemon.shutdown_timeout_seconds``. A disk that can no
longer be written (full, I/O errors) stops it too, within a few seconds and
with exit code 1: every shutdown step is bounded and independent (``lifecycle.teardown``), the lock is
always released, and the exit guard ends a process that still will not exit. A database server
that goes away does not: the daemon takes no work until it is back (``lifecycle.storewatch``).

The daemon is a node of its fleet (``tgdaemon.nodes``; on SQLite the only one): it registers once its
sockets are its own, owns its accounts before any work starts, runs the once-per-fleet work while it
leads, and on a stop releases its accounts only after its work on them has stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from tgdaemon import clockstep
from tgdaemon.config import Config
from tgdaemon.control.api import create_app as create_control_app
from tgdaemon.errors import (
    AlreadyRunning,
    StoreDisconnected,
    StoreError,
    StoreUnavailable,
    TgfleetError,
)
from tgdaemon.gateway.base import Gateway
from tgdaemon.gateway.simulator import Simulator
from tgdaemon.gateway.simworld import SimAccount
from tgdaemon.health.check import HealthChecker
from tgdaemon.httpjson import MAX_BODY, errors_middleware
from tgdaemon.lifecycle import exitguard, limits, signals, systemd, tls, worlds
from tgdaemon.lifecycle.connguard import Guard, GuardedTCPSite
from tgdaemon.lifecycle.datadir import DataDirLock
from tgdaemon.lifecycle.storewatch import StoreWatch, refuse_while_down
from tgdaemon.lifecycle.teardown import Teardown
from tgdaemon.logredact import REDACTOR
from tgdaemon.nodes import Node
from tgdaemon.onboarding import Onboarding
from tgdaemon.provider.api import add_routes as add_provider_routes
from tgdaemon.proxies.checker import ProxyChecker
from tgdaemon.quotas.executor import LocalExecutor
from tgdaemon.quotas.generator import Generator
from tgdaemon.quotas.inspector import Inspector
from tgdaemon.quotas.leases import Leases
from tgdaemon.quotas.probe import Probes
from tgdaemon.retention import Retention
from tgdaemon.runtime import RUNTIME, Runtime
from tgdaemon.setup.scheduler import SetupScheduler
from tgdaemon.store import Store, Tx, connect, event_view
from tgdaemon.stream import Hub

log = logging.getLogger(__name__)
# On a failed disk nothing still in flight can be recorded: no reason to give it the whole timeout.
FAILED_STORE_SHUTDOWN_SECONDS = 3.0
EXIT_GUARD_MARGIN_SECONDS = 1.5  # past the shutdown's own budget: the interpreter's exit
STORE_CLOSE_SECONDS = 1.5  # of the budget, kept for the store's last steps (optimize, closing both connections)


def change_publisher(hub: Hub) -> Callable[[Tx], Coroutine[Any, Any, None]]:
    """The commit hook: the log grew by the rows this transaction wrote (every change is one, the Tx sees
    to it); the hub reads them back in id order and publishes what they name."""

    async def on_commit(tx: Tx) -> None:
        if tx.events:
            hub.committed(tx.events[-1]["id"], (event_view(e) for e in tx.events))

    return on_commit


class Daemon:
    def __init__(self, cfg: Config, gateway: Gateway, *, install_signal_handlers: bool = True,
                 guard_exit: bool = False) -> None:
        self.cfg = cfg
        self.gateway = gateway
        self.install_signal_handlers = install_signal_handlers
        self.guard_exit = guard_exit  # the process is ours (``tgdaemon run``): end it should its exit wedge
        self.runtime: Runtime | None = None  # once every part is built, for tests to look into
        self.app: web.Application | None = None  # the served application, for tests to look into
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._side_tasks: list[asyncio.Task[None]] = []
        self._store_failure: str | None = None
        self._tls: tls.ProviderTLS | None = None  # the provider port's certificate, reloaded on SIGHUP
        self.exit_code = 0

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> int:
        """The daemon's life; stop signals are caught from the first moment to the last, so a SIGTERM while
        starting or while stopping is a graceful stop, never a kill."""
        with (signals.on_stop(self.stop, reload=lambda: tls.hangup(self._tls)) if self.install_signal_handlers
              else contextlib.nullcontext()):
            return await self._run()

    async def _run(self) -> int:
        fds = limits.prepare(self.cfg)  # before anything opens a descriptor
        asyncio.get_running_loop().set_exception_handler(limits.AcceptFailures(fallback=_quiet_store_failures))
        password = connect.read_password(self.cfg.store)  # a configuration mistake: refused before the lock
        self._tls = tls.provider_tls(self.cfg)  # so are a bad certificate and plain text on a network
        with REDACTOR.secret(password) if password else contextlib.nullcontext():  # no log line can carry it
            return await self._run_with(fds, password)

    async def _run_with(self, fds: limits.Limits, password: str | None) -> int:
        teardown = Teardown()
        opened = False  # a daemon that never had its store says only why, not that it stopped
        try:
            store = await self._open_store(teardown, password)
            opened = True
            rt = await self._start(store, teardown, fds.connection_cap)
            # What start-up made (the gate's accounts, the simulated world, the config) lives as long as the
            # daemon: out of the collector's sight, full collections no longer walk it again and again only to
            # find nothing (10-30 % of the hot path's time at 10,000 accounts; issue 13). No collection first:
            # in a big heap that is a pause the node's heartbeat would feel, for the little garbage start-up left.
            gc.freeze()
            systemd.notify("READY=1\nSTATUS=running")
            log.info("%s", limits.startup_line(self.cfg, fds))
            log.info("tgdaemon ready: socket %s, http %s (%s), gateway %s, store %s", rt.socket_path, rt.http_bound,
                     "TLS" if rt.http_tls else "no TLS", self.gateway.name, store.url)
            self.ready.set()
            await self._wait_for_stop()
        except StoreDisconnected as exc:  # lost while starting: once running, it would be waited for
            log.error("%s", exc)
            self.exit_code = 1
        except StoreUnavailable:
            pass  # said in one line by _store_failed; exit_code is 1
        finally:
            if opened:
                systemd.notify("STOPPING=1")
            await self._shutdown(teardown)
            gc.unfreeze()  # a process that goes on (a test, an embedding) collects what this daemon left
            if opened:
                log.info("tgdaemon stopped")
        return self.exit_code

    async def _open_store(self, teardown: Teardown, password: str | None) -> Store:
        for lock in self._locks():
            lock.acquire()
            teardown.now("releasing the data dir lock", lock.release)  # closing its descriptor is what frees it
        store = await connect.open_store(self.cfg, password=password)
        store.on_failure = self._store_failed
        teardown.final("closing the database", store.close)  # bounded step by step inside
        return store

    def _locks(self) -> list[DataDirLock]:
        """The data dir stays one daemon's, whatever the store; a SQLite file elsewhere is locked in its own
        directory too, where another daemon on that file (or ``tgdaemon store copy``) looks for the lock."""
        data_dir = self.cfg.data_dir()
        locks = [DataDirLock(data_dir)]
        path = self.cfg.store_url().path
        if path is not None and path.parent.resolve() != data_dir.resolve():
            locks.append(DataDirLock(path.parent))
        return locks

    async def _start(self, store: Store, teardown: Teardown, connection_cap: int) -> Runtime:
        """Every part, in the order each needs the others; each registers its undoing as soon as it exists."""
        cfg, gateway = self.cfg, self.gateway
        await self._check_fleet_kind(store)
        clock = await clockstep.start(cfg, store)  # before any work reads a deadline
        hub = await Hub.open(store, queue_size=cfg.daemon.stream_queue_size, replay_size=cfg.daemon.stream_replay_size)
        store.on_commit = change_publisher(hub)
        await store.listen(hub.committed)  # other daemons' commits on the same database (PostgreSQL)
        teardown.step("closing the gateway", gateway.close, 0.15)  # before its start: a failed start closes too
        await gateway.start(store)
        storewatch = StoreWatch(store)
        node = Node(cfg, store, gateway, keep=storewatch.keep, on_lost=self._node_lost)  # the gateway's gate
        # After the work and the last reports (registered before them), before the gateway closes.
        teardown.step("stopping the node (releasing its accounts)", node.stop, 0.1)
        leases = Leases(cfg, store)
        teardown.step("writing the last pulls and reports", leases.drain, 0.1)
        onboarding = Onboarding(store, gateway, cfg.telegram.login_timeout_seconds)
        teardown.step("closing pending logins", onboarding.close, 0.05)
        probes = Probes(cfg, store, node.gate, owner=node.name)
        self.runtime = rt = Runtime(
            cfg=cfg, store=store, hub=hub, gateway=gateway, socket_path=cfg.socket_path(), clock=clock,
            onboarding=onboarding, leases=leases, node=node,
            setup=SetupScheduler(cfg, store, gateway, cfg.data_dir() / "media", owner=node.name),
            inspector=Inspector(store, gateway, probes),
            generator=Generator(cfg, store, gateway, probes, leases),
            executor=LocalExecutor(store, gateway, leases, cfg.quotas.local_concurrency, owner=node.name),
            retention=Retention(cfg.retention, store, clock.vouched_now), storewatch=storewatch,
            health=HealthChecker(cfg, store, gateway, owner=node.name),
            proxies=ProxyChecker(cfg.proxies, store))
        await self._serve(rt, connection_cap, teardown)
        await self._seed_simulated_fleet(store)  # only once the sockets are ours: a refused start seeds nothing
        await node.start(rt.http_bound, lambda epoch: _leader_tasks(rt, epoch))
        await rt.read_figures()  # what status says should the database go before anyone asked
        rt.storewatch.on_change = hub.store_changed
        rt.storewatch.attach()
        self._side_tasks = [asyncio.create_task(rt.storewatch.keep(loop), name=name) for name, loop in _side_tasks(rt)]
        self._side_tasks.append(asyncio.create_task(rt.storewatch.run(), name="store watch"))
        # most of the budget: running setup tasks finish or go back to retry here
        teardown.step("stopping the side tasks", self._stop_side_tasks, 0.7)
        return rt

    def _node_lost(self, why: str) -> None:
        """Another daemon took this node's name (this one was taken for dead): one line, exit code 1."""
        log.error("%s", why)
        self.exit_code = 1
        self._stop.set()

    def _store_failed(self, why: str) -> None:
        """The store's first disk error: one line saying what failed, then a prompt stop with exit code 1."""
        log.error("cannot write the database: %s; stopping (free space or fix the disk, then start tgdaemon again)",
                  why)
        self._store_failure = why
        self.exit_code = 1
        self._stop.set()

    async def _wait_for_stop(self) -> None:
        """Until a stop is asked for, or a side task dies (then exit 1 so systemd restarts us)."""
        stop_wait = asyncio.create_task(self._stop.wait(), name="stop")
        done, _ = await asyncio.wait([stop_wait, *self._side_tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stop_wait and not task.cancelled():
                self.exit_code = 1
                if not isinstance(task.exception(), StoreUnavailable):  # that one was said already
                    log.error("side task %s ended (%s); stopping", task.get_name(), task.exception() or "returned")
        stop_wait.cancel()

    async def _stop_side_tasks(self) -> None:
        for task in self._side_tasks:
            task.cancel()
        await asyncio.wait(self._side_tasks)

    async def _shutdown(self, teardown: Teardown) -> None:
        """Everything started, undone in reverse within one budget (shorter once the disk has failed)."""
        budget = self.cfg.daemon.shutdown_timeout_seconds
        if self._store_failure is not None:
            budget = min(budget, FAILED_STORE_SHUTDOWN_SECONDS)
        if self.guard_exit:
            exitguard.arm(budget + EXIT_GUARD_MARGIN_SECONDS, lambda: self.exit_code or 1)
        await teardown.run(budget, reserve=STORE_CLOSE_SECONDS)

    async def _check_fleet_kind(self, store: Store) -> None:
        """A data dir holds either a simulated fleet or a real one, never both."""
        recorded = await store.get_meta("gateway")
        if recorded is None:
            async with store.tx() as tx:
                await store.set_meta(tx, "gateway", self.gateway.name)
        elif recorded != self.gateway.name:
            place = self._place()
            raise StoreError(f"{place.name} holds a {recorded} fleet, but the daemon was started with "
                             f"the {self.gateway.name} gateway; use another {place.other}")
        if isinstance(self.gateway, Simulator):  # and a simulated one keeps its world
            await worlds.settle(store, self.gateway, self._place())

    def _place(self) -> worlds.Place:
        if not self.cfg.store.url:
            return worlds.Place.data_dir(self.cfg.data_dir())
        return worlds.Place(f"store {self.cfg.store_url().url}", "the store", "--store")

    async def _seed_simulated_fleet(self, store: Store) -> None:
        if not isinstance(self.gateway, Simulator) or await store.count_accounts():
            return
        seeds = self.gateway.seeds()
        try:
            await _seed(store, seeds, self.gateway.world())
        except Exception:
            if not await store.count_accounts():
                raise
            log.info("simulator: another node seeded the fleet first")  # two nodes started on an empty database
            return
        log.info("simulator: seeded %d accounts", len(seeds))

    async def _serve(self, rt: Runtime, connection_cap: int, teardown: Teardown) -> None:
        """One application, one AppRunner, two sites: the Unix socket and the TCP port (guarded)."""
        d = self.cfg.daemon
        guard = Guard(connection_cap, d.http_header_timeout_seconds, d.http_idle_timeout_seconds)
        app = web.Application(middlewares=[errors_middleware, guard.middleware, refuse_while_down],
                              client_max_size=MAX_BODY)
        app[RUNTIME] = rt
        add_provider_routes(app)
        app.add_subapp("/v1/", create_control_app())
        self.app = app
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        teardown.step("closing the HTTP sites", runner.cleanup, 0.15)
        await _bind_unix(runner, rt.socket_path)
        # Only a socket this daemon bound is removed (first, so no client connects to a closing daemon).
        teardown.now(f"removing socket {rt.socket_path}", lambda: rt.socket_path.unlink(missing_ok=True))
        host, port = self.cfg.http_bind()
        site = GuardedTCPSite(runner, host, port, guard, self._tls)
        try:
            await site.start()
        except OSError as exc:
            raise TgfleetError(f"daemon.http {host}:{port}: cannot listen: {exc.strerror or exc}") from None
        bound = next((a for a in runner.addresses if isinstance(a, tuple)), (host, port))
        rt.http_bound = f"{bound[0]}:{bound[1]}"
        rt.http_tls = self._tls is not None


def _side_tasks(rt: Runtime) -> list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]]:
    """The parts that work on their own, each a task watched by the daemon: one that ends stops it, unless
    the lost database ended it (``StoreWatch.keep`` runs it again once it is back). Every node runs these,
    each with its own accounts; the node runs the leader's (``_leader_tasks``) while it leads."""
    tasks = [("setup", rt.setup.run), ("logins", rt.onboarding.run), ("inspector", rt.inspector.run),
             ("snapshots", rt.generator.run_refresh), ("executor", rt.executor.run),
             ("clock", lambda: rt.clock.run(rt.store)), ("stream", rt.hub.run), ("node", rt.node.run),
             ("health", rt.health.run)]
    if (interval := systemd.watchdog_interval()) is not None:
        tasks.append(("watchdog", lambda: _watchdog(interval)))
    return tasks


def _leader_tasks(rt: Runtime, epoch: int) -> list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]]:
    """The once-per-fleet work, run by the leader under its epoch (generation is fenced by it)."""
    return [("generator", lambda: rt.generator.run_generate(epoch)), ("reaper", rt.leases.run_reaper),
            ("setup dispatch", rt.setup.run_dispatch), ("retention", rt.retention.run),
            ("proxy checks", rt.proxies.run)]


async def _seed(store: Store, seeds: list[SimAccount], world: dict[str, Any]) -> None:
    """The accounts and their world in one transaction: a second node seeding at once fails as a whole."""
    async with store.tx() as tx:
        await store.insert_accounts(tx, (
            {"phone": s.phone, "tg_user_id": s.tg_user_id, "label": s.label, "is_probe": int(s.is_probe),
             "first_name": s.first_name, "last_name": s.last_name, "profile_json": "{}"} for s in seeds))
        await tx.event("fleet.seeded", f"simulator seeded {len(seeds)} accounts")
        await worlds.record(store, tx, world)


def _quiet_store_failures(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A task that died of the failed disk adds nothing to the one line already logged; the rest as usual."""
    if isinstance(context.get("exception"), StoreUnavailable):
        return
    loop.default_exception_handler(context)


async def _bind_unix(runner: web.AppRunner, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists() or path.is_symlink():
        if socket_answers(path):
            raise AlreadyRunning(f"socket {path} is in use by another tgdaemon; stop it or use another --socket")
        path.unlink()
    old = os.umask(0o177)  # the socket is born 0600: no window where others could connect
    try:
        await web.UnixSite(runner, str(path)).start()
    except OSError as exc:
        raise TgfleetError(f"socket {path}: cannot listen: {exc.strerror or exc}") from None
    finally:
        os.umask(old)
    os.chmod(path, 0o600)


def socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


async def _watchdog(interval: float) -> None:
    while True:
        systemd.notify("WATCHDOG=1")
        await asyncio.sleep(interval)
