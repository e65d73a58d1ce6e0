"""One read by a probe account, for inspection and for posts snapshots.

The probe is reserved by the one account lock for the call, marked used (so
the next read takes another probe), and any error is applied to it by the one
policy before the caller sees the classified error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from tgdaemon.classify import Classified, classify
from tgdaemon.config import Config
from tgdaemon.gateway.base import AccountRef
from tgdaemon.policy import account_effect
from tgdaemon.store import Store
from tgdaemon.timeutil import now

T = TypeVar("T")
LOCK_SECONDS = 120.0


@dataclass(frozen=True, slots=True)
class ProbeRead(Generic[T]):
    account_id: int
    value: T | None = None
    error: Classified | None = None


class Probes:
    def __init__(self, cfg: Config, store: Store) -> None:
        self.cfg = cfg
        self.store = store

    async def read(self, purpose: str, call: Callable[[AccountRef], Awaitable[T]]) -> ProbeRead[T] | None:
        """Run ``call`` as the least recently used ready probe; None when no probe is ready."""
        for probe in await self.store.probe_accounts():
            account = AccountRef(probe.id, probe.tg_user_id, probe.phone)
            holder = f"probe:{purpose}"
            async with self.store.tx() as tx:
                if not await self.store.take_lock(tx, account.id, holder, LOCK_SECONDS):
                    continue  # taken in the meantime: try the next one
                await self.store.mark_used(tx, account.id)
            try:
                value = await call(account)
            except Exception as exc:
                error = classify(exc)
                async with self.store.tx() as tx:
                    await self.store.apply_account_effect(tx, account.id, account_effect(error, self.cfg.limits, now()))
                    await self.store.release_lock(tx, account.id, holder)
                return ProbeRead(account.id, error=error)
            async with self.store.tx() as tx:
                await self.store.release_lock(tx, account.id, holder)
            return ProbeRead(account.id, value=value)
        return None
