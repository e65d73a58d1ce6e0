"""What the APIs see of a running daemon: its parts and its status.

Every part exists before the Runtime does (``lifecycle.daemon`` builds them in
order, then this): no part is ever missing, so none is optional. A part that
the config turns off is still built, and idles: with ``setup.enabled = false``
the scheduler runs no dispatch loop but still answers a dispatch (its tasks
wait) and a retry; retention with nothing to prune sleeps. So the APIs never
ask whether a part is there, only what it says.

While the database is out of reach, status answers from memory: the store's
figures (accounts, tasks, sizes) as last read, and the store marked down.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from tgdaemon import __version__
from tgdaemon.config import Config
from tgdaemon.errors import StoreDisconnected
from tgdaemon.gateway.base import Gateway
from tgdaemon.gateway.simulator import Simulator
from tgdaemon.onboarding import Onboarding
from tgdaemon.store import Store
from tgdaemon.store.api import NodeInfo
from tgdaemon.stream import Hub
from tgdaemon.timeutil import iso, now
from tgdaemon.wire import (
    STATES,
    SetupStatus,
    SimulatorStatus,
    Status,
    StreamStatus,
    node_of,
)

if TYPE_CHECKING:
    from tgdaemon.clockstep import ClockSteps
    from tgdaemon.health.check import HealthChecker
    from tgdaemon.lifecycle.storewatch import StoreWatch
    from tgdaemon.nodes import Node
    from tgdaemon.proxies.checker import ProxyChecker
    from tgdaemon.quotas.executor import LocalExecutor
    from tgdaemon.quotas.generator import Generator
    from tgdaemon.quotas.inspector import Inspector
    from tgdaemon.quotas.leases import Leases
    from tgdaemon.retention import Retention
    from tgdaemon.setup.scheduler import SetupScheduler


@dataclass
class Figures:
    """What status reads of the store."""

    accounts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    tasks: dict[str, dict[str, int]] = field(default_factory=dict)
    tasks_per_minute: int = 0
    database: dict[str, Any] = field(default_factory=dict)
    nodes: list[NodeInfo] = field(default_factory=list)
    cooldowns: dict[str, int] = field(default_factory=dict)  # accounts in cooldown by reason ("proxy": its proxy is dead)


@dataclass
class Runtime:
    cfg: Config
    store: Store
    hub: Hub
    gateway: Gateway
    socket_path: Path
    clock: ClockSteps
    onboarding: Onboarding
    setup: SetupScheduler
    leases: Leases
    inspector: Inspector
    generator: Generator
    executor: LocalExecutor
    retention: Retention
    storewatch: StoreWatch
    node: Node  # this daemon in its fleet: its name, whether it leads, the accounts it owns
    health: HealthChecker  # account checks: asked for (`accounts check`, `accounts sessions`) and scheduled
    proxies: ProxyChecker  # the accounts' own proxies' health: the leader's schedule, and `proxies check`
    started_at: float = field(default_factory=now)
    started_mono: float = field(default_factory=time.monotonic)
    http_bound: str | None = None  # HOST:PORT once the provider API listens (its port may be chosen by the OS)
    http_tls: bool = False  # whether the provider port speaks TLS
    figures: Figures = field(default_factory=Figures)  # as last read: what status says while the database is down

    def uptime(self) -> float:
        return time.monotonic() - self.started_mono

    async def read_figures(self) -> Figures:
        """The store's figures read now, unless the database is out of reach: then the last ones read."""
        if self.storewatch.down is None:
            try:
                self.figures = Figures(
                    accounts=await self.store.account_counts(), tasks=await self.store.task_counts(),
                    tasks_per_minute=await self.store.tasks_finished_since(now() - 60),
                    database=await self.store.database_stats(),
                    nodes=await self.store.list_nodes(self.cfg.nodes.dead_after_seconds),
                    cooldowns={reason or "unknown": n for reason, n in await self.store.cooldowns_by_reason()})
            except StoreDisconnected:
                pass  # lost just now: the watch has heard of it
        return self.figures

    async def status(self) -> Status:
        figures = await self.read_figures()
        return Status(
            version=__version__,
            pid=os.getpid(),
            started_at=iso(self.started_at),
            uptime_seconds=round(self.uptime(), 1),
            gateway=self.gateway.name,
            data_dir=str(self.cfg.data_dir()),
            socket=str(self.socket_path),
            http=self.http_bound,
            tls=self.http_tls,
            store=self.storewatch.status(),  # a store's URL never holds a password
            synchronous=self.store.synchronous,
            accounts=figures.accounts,
            tasks=figures.tasks,
            tasks_per_minute=figures.tasks_per_minute,
            stream=StreamStatus(epoch=self.hub.epoch, seq=self.hub.seq, subscribers=self.hub.subscribers),
            setup=SetupStatus(enabled=self.cfg.setup.enabled, running=self.setup.running()),
            database=figures.database,
            retention=self.retention.describe(),
            node=self.node.name,
            nodes=[node_of(n) for n in figures.nodes],
            cooldowns=figures.cooldowns,
            simulator=(msgspec.convert(self.gateway.describe(), SimulatorStatus)
                       if isinstance(self.gateway, Simulator) else msgspec.UNSET),
        )


RUNTIME = web.AppKey("runtime", Runtime)
