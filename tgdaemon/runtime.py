"""What the APIs see of a running daemon: its parts and its status."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tgdaemon import __version__
from tgdaemon.config import Config
from tgdaemon.gateway.base import Gateway
from tgdaemon.onboarding import Onboarding
from tgdaemon.store import Store
from tgdaemon.stream import Hub
from tgdaemon.timeutil import iso, now

if TYPE_CHECKING:
    from tgdaemon.quotas.executor import LocalExecutor
    from tgdaemon.quotas.generator import Generator
    from tgdaemon.quotas.inspector import Inspector
    from tgdaemon.quotas.leases import Leases
    from tgdaemon.retention import Retention
    from tgdaemon.setup.scheduler import SetupScheduler


@dataclass
class Runtime:
    cfg: Config
    store: Store
    hub: Hub
    gateway: Gateway
    socket_path: Path
    onboarding: Onboarding
    started_at: float = field(default_factory=now)
    started_mono: float = field(default_factory=time.monotonic)
    http_bound: str | None = None
    socket_bound: bool = False
    setup: SetupScheduler | None = None
    inspector: Inspector | None = None
    leases: Leases | None = None
    generator: Generator | None = None
    executor: LocalExecutor | None = None
    retention: Retention | None = None

    def uptime(self) -> float:
        return time.monotonic() - self.started_mono

    async def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": __version__,
            "pid": os.getpid(),
            "started_at": iso(self.started_at),
            "uptime_seconds": round(self.uptime(), 1),
            "gateway": self.gateway.name,
            "data_dir": str(self.cfg.data_dir()),
            "socket": str(self.socket_path),
            "http": self.http_bound,
            "store": {"kind": self.store.kind, "url": self.store.url},  # a URL never holds a password
            "synchronous": self.store.synchronous,  # "full": acknowledged writes survive power loss
            "accounts": await self.store.account_counts(),
            "tasks": await self.store.task_counts(),
            "tasks_per_minute": await self.store.tasks_finished_since(now() - 60),
            "stream": {"epoch": self.hub.epoch, "seq": self.hub.seq, "subscribers": self.hub.subscribers},
            "setup": {"enabled": self.cfg.setup.enabled, "running": self.setup.running() if self.setup else 0},
            "database": await self.store.database_stats(),
            "retention": self.retention.describe() if self.retention else None,
        }
        if describe := getattr(self.gateway, "describe", None):
            out[self.gateway.name] = describe()
        return out


RUNTIME = web.AppKey("runtime", Runtime)
