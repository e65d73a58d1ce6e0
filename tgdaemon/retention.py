"""The pruning side task ([retention]): every ``interval_seconds``, old history goes, one small batch at a time.

Pruning shares the one writer with reports, pulls and setup work, so it
never takes it for long: each batch is its own transaction of at most
``batch_size`` rows, and between batches it sleeps as long as the batch held
the writer, so it never has more than about half of it, however large the
backlog (a first run on a year of history).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass

from tgdaemon.config import RetentionConfig
from tgdaemon.quotas.leases import utc_day
from tgdaemon.store import Batch, Store
from tgdaemon.timeutil import iso, now

log = logging.getLogger(__name__)
DAY = 86400.0


@dataclass
class Pruned:
    """One round: rows deleted per table, batches written, and the longest a batch held the writer."""

    events: int = 0
    tasks: int = 0
    usage: int = 0
    batches: int = 0
    longest_batch_ms: float = 0.0

    def add(self, batch: Batch) -> None:
        if batch.held_seconds:
            self.batches += 1
            self.longest_batch_ms = max(self.longest_batch_ms, round(batch.held_seconds * 1000, 2))


class Retention:
    def __init__(self, cfg: RetentionConfig, store: Store) -> None:
        self.cfg = cfg
        self.store = store
        self.last: Pruned | None = None
        self.last_at: float | None = None

    def describe(self) -> dict[str, object]:
        """What status shows: the rules, and what the last round did."""
        return {"events_days": self.cfg.events_days, "finished_tasks_days": self.cfg.finished_tasks_days,
                "interval_seconds": self.cfg.interval_seconds, "last_run_at": iso(self.last_at),
                "last_run": asdict(self.last) if self.last else None}

    async def run(self) -> None:
        while True:
            pruned = await self.prune()
            if pruned.events or pruned.tasks or pruned.usage:
                log.info("retention: pruned %d events, %d finished tasks, %d usage rows in %d batches"
                         " (longest held the writer %.1f ms)", pruned.events, pruned.tasks, pruned.usage,
                         pruned.batches, pruned.longest_batch_ms)
            await asyncio.sleep(self.cfg.interval_seconds)

    async def prune(self) -> Pruned:
        """One round over everything old enough; 0 days keeps that history for ever."""
        at = now()
        out = Pruned()
        limit = self.cfg.batch_size
        if self.cfg.events_days:
            while True:
                batch = await self.store.prune_events(at - self.cfg.events_days * DAY, limit)
                out.events += batch.deleted
                out.add(batch)
                await asyncio.sleep(batch.held_seconds)
                if batch.deleted < limit:
                    break
        if self.cfg.finished_tasks_days:
            before = at - self.cfg.finished_tasks_days * DAY
            cursor = None
            while True:
                batch = await self.store.prune_tasks(before, limit, cursor, at)
                out.tasks += batch.deleted
                out.add(batch)
                cursor = batch.cursor
                await asyncio.sleep(batch.held_seconds)
                if batch.scanned < limit:
                    break
            # Usage goes with the work it counted; only today's is read (the daily cap).
            day = utc_day(before)
            while True:
                batch = await self.store.prune_usage(day, limit)
                out.usage += batch.deleted
                out.add(batch)
                await asyncio.sleep(batch.held_seconds)
                if batch.deleted < limit:
                    break
        self.last, self.last_at = out, at
        return out
