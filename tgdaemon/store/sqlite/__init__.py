"""The SQLite driver: the embedded default (WAL, one writer, one reader), a database file in the data dir."""

from __future__ import annotations

from typing import Literal

from tgdaemon.store.api import AccountEffect, Tx
from tgdaemon.store.sqlite import clock, locks, setup
from tgdaemon.store.sqlite.clock import ClockStore
from tgdaemon.store.sqlite.core import own
from tgdaemon.store.sqlite.health import HealthStore
from tgdaemon.store.sqlite.nodes import NodeStore
from tgdaemon.store.sqlite.providers import ProviderStore
from tgdaemon.store.sqlite.proxies import ProxyStore
from tgdaemon.store.sqlite.pulled import PulledStore
from tgdaemon.store.sqlite.quotas import QuotaStore
from tgdaemon.store.sqlite.retention import RetentionStore
from tgdaemon.store.sqlite.setup import SetupStore
from tgdaemon.store.sqlite.sim import SimStore
from tgdaemon.store.sqlite.snapshot import SnapshotStore
from tgdaemon.store.sqlite.stats import StatsStore
from tgdaemon.store.sqlite.tasksview import TasksViewStore
from tgdaemon.timeutil import now


class SQLiteStore(SetupStore, QuotaStore, PulledStore, ProviderStore, ClockStore, RetentionStore, StatsStore,
                  NodeStore, SimStore, SnapshotStore, HealthStore, ProxyStore, TasksViewStore):
    """Implements ``tgdaemon.store.api.Store``; the mixins split it by subject, not by layer."""

    kind: Literal["sqlite", "postgresql"] = "sqlite"

    @property
    def url(self) -> str:
        """sqlite:///ABSOLUTE/PATH, the form ``[store] url`` takes (three slashes, then the path from /)."""
        return f"sqlite://{self.path.absolute()}"

    async def take_lock(self, tx: Tx, account_id: int, holder: str, seconds: float) -> bool:
        return await locks.take_lock(own(tx), account_id, holder, seconds)

    async def release_lock(self, tx: Tx, account_id: int, holder: str) -> None:
        await locks.release_lock(own(tx), account_id, holder)

    async def apply_account_effect(self, tx: Tx, account_id: int, effect: AccountEffect, *,
                                   epoch: int | None = None) -> bool:
        return await setup.apply_account_effect(own(tx), account_id, effect, epoch=epoch)

    async def mark_used(self, tx: Tx, account_id: int) -> None:
        """Least recently used first: probes take turns by this."""
        await own(tx).execute("UPDATE accounts SET last_used_at = ? WHERE id = ?", (now(), account_id))

    async def shift_deadlines(self, tx: Tx, step: float) -> dict[str, int]:
        return await clock.shift_deadlines(own(tx), step)

