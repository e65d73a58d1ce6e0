"""One read by a probe account, for inspection and for posts snapshots.

The probe is reserved by the one account lock for the call, marked used (so
the next read takes another probe), and any error is applied to it by the one
policy before the caller sees the classified error.

Several nodes (design 9): a node reads only with the probes it owns (``owner``), and their effects are
fenced by the epoch it owns them under. A node with no probe ready asks ``none_in_fleet`` before it
says that no probe is: another node's may be.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from tgdaemon.classify import Classified, classify
from tgdaemon.config import Config
from tgdaemon.errors import NotOwned
from tgdaemon.gateway.base import AccountRef
from tgdaemon.gateway.gate import Gate, OpenGate
from tgdaemon.policy import account_effect
from tgdaemon.store import ProbeAccount, Store
from tgdaemon.timeutil import now

T = TypeVar("T")
LOCK_SECONDS = 120.0


@dataclass(frozen=True, slots=True)
class ProbeRead(Generic[T]):
    account_id: int
    value: T | None = None
    error: Classified | None = None


class Probes:
    def __init__(self, cfg: Config, store: Store, gate: Gate | None = None, *, owner: str | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.gate = gate or OpenGate()
        self.owner = owner  # the node whose probes these are; None: every probe

    async def none_in_fleet(self) -> bool:
        """Whether no probe at all is ready, on any node: only then is "no probe" the quota's news."""
        return self.owner is None or not await self.store.probe_accounts()

    async def read(self, purpose: str, call: Callable[[AccountRef], Awaitable[T]]) -> ProbeRead[T] | None:
        """Run ``call`` as the least recently used ready probe of this node; None when none is ready."""
        for probe in await self.store.probe_accounts(owner=self.owner):
            if not self.gate.allows(probe.id):
                continue  # being let go of
            with self.gate.working(probe.id):
                read = await self._read_as(probe, f"probe:{purpose}", call)
            if read is not None:
                return read
        return None

    async def _read_as(self, probe: ProbeAccount, holder: str,
                       call: Callable[[AccountRef], Awaitable[T]]) -> ProbeRead[T] | None:
        account = AccountRef(probe.id, probe.tg_user_id, probe.phone)
        async with self.store.tx() as tx:
            if not await self.store.take_lock(tx, account.id, holder, LOCK_SECONDS):
                return None  # taken in the meantime: try the next one
            await self.store.mark_used(tx, account.id)
        try:
            value = await call(account)
        except NotOwned:
            async with self.store.tx() as tx:
                await self.store.release_lock(tx, account.id, holder)
            return None  # let go of during the read: another probe
        except Exception as exc:
            error = classify(exc)
            async with self.store.tx() as tx:
                await self.store.apply_account_effect(tx, account.id, account_effect(error, self.cfg.limits, now()),
                                                      epoch=probe.epoch if self.owner is not None else None)
                await self.store.release_lock(tx, account.id, holder)
            return ProbeRead(account.id, error=error)
        async with self.store.tx() as tx:
            await self.store.release_lock(tx, account.id, holder)
        return ProbeRead(account.id, value=value)
