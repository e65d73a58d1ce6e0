"""A step of the wall clock never stalls the fleet nor fails live leases (design 10).

While the daemon runs, the wall clock is watched against a steady clock: when
their offset moves by more than ``THRESHOLD_SECONDS`` the wall clock has been
stepped (``date -s``, an NTP correction, a VM restored), and the store's next
write transaction (the reaper's, a report's, a pull's, or this module's own
tick) first moves the stored deadlines by the same step, so each keeps the
length it had left and nothing in that transaction ever compares the stepped
clock with unmoved deadlines. NTP slewing is followed only once it adds up to
more than the threshold; a suspend is no step (the steady clock counts it).

What this cannot reach: a time computed from the clock in the milliseconds
before a step and written after the move (a report's FLOOD_WAIT in flight) is
off by the step.

A step while the daemon was down is measured too when the machine has not
rebooted since (the offset is kept in ``meta`` with the boot id); after a
reboot it cannot be, so every deadline is bounded by its own length instead
(tgdaemon/store/clock.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from tgdaemon.classify import MAX_WAIT
from tgdaemon.config import Config
from tgdaemon.quotas.probe import LOCK_SECONDS as PROBE_LOCK_SECONDS
from tgdaemon.store import Maxima, Store, Tx
from tgdaemon.timeutil import now, steady

log = logging.getLogger(__name__)
THRESHOLD_SECONDS = 2.0  # far above the jitter of reading two clocks, far below any deadline's length
CHECK_SECONDS = 1.0  # an idle daemon still follows a step within this
META_KEY = "clock"
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _boot_id() -> str | None:
    """This boot's id: the steady clock restarts at 0 on every boot, so offsets compare only within one."""
    try:
        return BOOT_ID.read_text().strip() or None
    except OSError:
        return None


class ClockSteps:
    """The store's ``ClockFollower``: measures steps and moves the deadlines with them."""

    def __init__(self, offset: float | None = None, threshold: float = THRESHOLD_SECONDS) -> None:
        self.threshold = threshold
        # wall minus steady when the stored deadlines were written: now, unless a start-up knows better
        self.offset = now() - steady() if offset is None else offset
        self.shifting = 0.0  # a step moved in the open transaction, not committed yet
        # Forward steps followed since start: history is pruned as if they had not happened, since a wrong
        # step (a bad RTC, a mistyped date -s) must not delete what is not old; a right one costs only
        # keeping some history longer, until the next start.
        self.forward = 0.0
        self._moved: dict[str, int] = {}

    def pending(self) -> float:
        """Seconds the wall clock stepped that the store has not followed yet; 0.0 below the threshold.
        Called at the start of every write transaction, so it is two clock reads and nothing else."""
        step = now() - steady() - self.offset
        return step if abs(step) > self.threshold else 0.0

    async def shift(self, store: Store, tx: Tx, step: float) -> None:
        self._moved = await store.shift_deadlines(tx, step)
        await tx.event("clock.step", f"the wall clock stepped {step:+.0f} s; {sum(self._moved.values())}"
                       " stored times moved with it", data={"seconds": round(step, 3), **self._moved})
        self.shifting = step
        await _record(tx, self.offset + step)

    def followed(self, step: float) -> None:
        """After the commit: the store's deadlines are now on the stepped clock."""
        self.offset += step
        self.forward += max(step, 0.0)
        self.shifting = 0.0
        log.warning("wall clock stepped %+.1f s: moved %s stored time(s) with it (%s)", step,
                    sum(self._moved.values()), ", ".join(f"{k} {v}" for k, v in self._moved.items()))

    def vouched_now(self) -> float:
        """The wall clock less every forward step followed: the latest time the steady clock vouches for."""
        return now() - self.forward

    async def run(self, store: Store) -> None:
        """The side task: a step is followed within ``CHECK_SECONDS`` even when nothing else writes."""
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            if self.pending():
                async with store.tx():  # the shift happens at the start of any write transaction
                    pass


def maxima(cfg: Config) -> Maxima:
    """The longest each kind of deadline can lie ahead, from the config the daemon runs with."""
    q, lease_lock_extra = cfg.quotas, 2 * cfg.quotas.reaper_interval_seconds  # as Leases.lock_seconds
    longest_wait = MAX_WAIT + cfg.limits.flood_wait_jitter_seconds  # a FLOOD_WAIT_X is capped there
    return Maxima(
        quota_retry=q.retry_seconds, pace=q.pace_seconds,
        cooldown=max(longest_wait, cfg.limits.peer_flood_cooldown_seconds, q.pace_seconds),
        backoff=max(cfg.setup.retry.backoff_seconds), setup_lock=cfg.setup.lock_seconds,
        probe_lock=PROBE_LOCK_SECONDS, quota_lock=q.max_lease_seconds + lease_lock_extra,
        lease=q.max_lease_seconds, reservation=q.lease_seconds + lease_lock_extra,
        snapshot_ttl=q.posts_snapshot_ttl_hours * 3600)


async def start(cfg: Config, store: Store) -> ClockSteps:
    """At start-up, before any work: follow a step made while the daemon was down, or, when it cannot be
    measured (a reboot), bound every deadline by its own length; then watch the clock from here on."""
    clock = ClockSteps(_recorded_offset(await store.get_meta(META_KEY)))
    store.clock = clock
    async with store.tx() as tx:  # a step since the last run on this boot is followed at its start
        if not clock.shifting:
            await _record(tx, clock.offset)
    clamped = await store.clamp_deadlines(maxima(cfg))
    if any(clamped.values()):
        log.warning("stored times lay further ahead than their own length (the clock went back while the"
                    " daemon was down?), bounded: %s", ", ".join(f"{k} {v}" for k, v in clamped.items() if v))
    return clock


def _recorded_offset(recorded: str | None) -> float | None:
    """The offset the last run on this boot left the deadlines on; None after a reboot (or unreadable)."""
    try:
        data = json.loads(recorded or "{}")
        boot = data.get("boot")
        return float(data["offset"]) if boot is not None and boot == _boot_id() else None
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


async def _record(tx: Tx, offset: float) -> None:
    """The offset the stored deadlines are on, for the next start on this boot to measure a step against."""
    await tx.set_meta(META_KEY, json.dumps({"boot": _boot_id(), "offset": offset}))
