"""The PostgreSQL driver (asyncpg): for fleets that outgrow one machine.

asyncpg rather than psycopg 3: it speaks PostgreSQL's binary protocol itself and keeps a prepared
statement per distinct statement on each connection, so the daemon's short, repeated statements cost
one round trip each with no parsing or planning after the first; its pool reconnects by itself after
the server comes back. One choice per kind of value (epoch-second times, jsonb, bigint identity ids):
see migrations/0001_schema.sql.
"""

from __future__ import annotations

from tgdaemon.store.api import AccountEffect, Tx
from tgdaemon.store.postgres import clock, locks, setup
from tgdaemon.store.postgres.clock import ClockStore
from tgdaemon.store.postgres.core import own
from tgdaemon.store.postgres.health import HealthStore
from tgdaemon.store.postgres.nodes import NodeStore
from tgdaemon.store.postgres.providers import ProviderStore
from tgdaemon.store.postgres.proxies import ProxyStore
from tgdaemon.store.postgres.pulled import PulledStore
from tgdaemon.store.postgres.quotas import QuotaStore
from tgdaemon.store.postgres.retention import RetentionStore
from tgdaemon.store.postgres.setup import SetupStore
from tgdaemon.store.postgres.sim import SimStore
from tgdaemon.store.postgres.snapshot import SnapshotStore
from tgdaemon.store.postgres.stats import StatsStore
from tgdaemon.store.postgres.tasksview import TasksViewStore
from tgdaemon.timeutil import now


class PostgresStore(SetupStore, QuotaStore, PulledStore, ProviderStore, ClockStore, RetentionStore, StatsStore,
                    NodeStore, SimStore, SnapshotStore, HealthStore, ProxyStore, TasksViewStore):
    """Implements ``tgdaemon.store.api.Store``; the mixins split it by subject, as the SQLite driver's do."""

    async def take_lock(self, tx: Tx, account_id: int, holder: str, seconds: float) -> bool:
        return await locks.take_lock(own(tx), account_id, holder, seconds)

    async def release_lock(self, tx: Tx, account_id: int, holder: str) -> None:
        await locks.release_lock(own(tx), account_id, holder)

    async def apply_account_effect(self, tx: Tx, account_id: int, effect: AccountEffect, *,
                                   epoch: int | None = None) -> bool:
        return await setup.apply_account_effect(own(tx), account_id, effect, epoch=epoch)

    async def mark_used(self, tx: Tx, account_id: int) -> None:
        """Least recently used first: probes take turns by this."""
        await own(tx).execute("UPDATE accounts SET last_used_at = $1 WHERE id = $2", now(), account_id)

    async def shift_deadlines(self, tx: Tx, step: float) -> dict[str, int]:
        return await clock.shift_deadlines(own(tx), step)

