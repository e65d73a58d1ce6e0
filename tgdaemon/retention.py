"""The pruning side task ([retention]): every ``interval_seconds``, old history goes, one small batch at a time.

Pruning shares the one writer with reports, pulls and setup work, so it
never takes it for long. Each batch is its own transaction, and its size
adapts to what a batch costs on this machine: a deleted row costs an index
page or so of WAL, which is 1 ms per few hundred rows on one disk and ten
times that on another, so a fixed row count cannot promise a hold time. The
size starts small, doubles while a batch holds the writer for less than half
of ``HOLD_TARGET_S``, shrinks in proportion when one holds it longer, and
never exceeds ``batch_size``. Between batches the task sleeps as long as the
batch held the writer, so it never has more than about half of it, however
large the backlog (a first run on a year of history).
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tgdaemon.config import RetentionConfig
from tgdaemon.quotas.leases import utc_day
from tgdaemon.store import Batch, Store
from tgdaemon.timeutil import iso, now

log = logging.getLogger(__name__)
DAY = 86400.0
HOLD_TARGET_S = 0.004  # what one batch may hold the writer for: "a few milliseconds"
FIRST_ROWS = 100
MIN_ROWS = 10
RESCAN_S = 86400.0


@dataclass
class Pruned:
    """One round: rows deleted per table, write batches, and how long they held the writer."""

    events: int = 0
    tasks: int = 0
    usage: int = 0
    seconds: float = 0.0  # the round's length, sleeps between batches included
    holds_ms: list[float] = field(default_factory=list)

    def view(self) -> dict[str, float | int]:
        holds = sorted(self.holds_ms)
        return {"events": self.events, "tasks": self.tasks, "usage": self.usage, "seconds": self.seconds,
                "batches": len(holds), "median_batch_ms": round(statistics.median(holds), 2) if holds else 0.0,
                "p99_batch_ms": round(holds[int(len(holds) * 0.99)], 2) if holds else 0.0,
                "longest_batch_ms": round(holds[-1], 2) if holds else 0.0}


class Retention:
    def __init__(self, cfg: RetentionConfig, store: Store, clock: Callable[[], float] = now) -> None:
        """``clock``: the time history's age is measured from (clockstep.ClockSteps.vouched_now in the daemon,
        so that a forward step of the wall clock never makes young history look old)."""
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.last: Pruned | None = None
        self.last_at: float | None = None
        # Where the scan of old finished tasks stopped: a round goes on from there, so the done tasks
        # that live quotas keep (possibly millions) are not read again every round. Once in RESCAN_S
        # it starts over, to prune those whose quota has ended since.
        self._task_cursor: tuple[float, int] | None = None
        self._rescan_at = 0.0
        self._rows = {"events": min(FIRST_ROWS, cfg.batch_size), "tasks": min(FIRST_ROWS, cfg.batch_size),
                      "usage": min(FIRST_ROWS, cfg.batch_size)}

    def describe(self) -> dict[str, object]:
        """What status shows: the rules, and what the last round did."""
        return {"events_days": self.cfg.events_days, "finished_tasks_days": self.cfg.finished_tasks_days,
                "interval_seconds": self.cfg.interval_seconds, "last_run_at": iso(self.last_at),
                "last_run": self.last.view() if self.last else None}

    async def run(self) -> None:
        while True:
            pruned = await self.prune()
            if pruned.events or pruned.tasks or pruned.usage:
                v = pruned.view()
                log.info("retention: pruned %d events, %d finished tasks, %d usage rows in %d batches, %.1f s"
                         " (writer held %.1f ms per batch at the median, %.1f ms at the longest)", v["events"],
                         v["tasks"], v["usage"], v["batches"], v["seconds"], v["median_batch_ms"],
                         v["longest_batch_ms"])
            await asyncio.sleep(self.cfg.interval_seconds)

    async def prune(self) -> Pruned:
        """One round over everything old enough; 0 days keeps that history for ever."""
        at = now()
        vouched = min(at, self.clock())
        started = time.monotonic()
        out = Pruned()
        if self.cfg.events_days:
            before = vouched - self.cfg.events_days * DAY
            out.events = await self._drain("events", out, lambda n: self.store.prune_events(before, n, at))
        if self.cfg.finished_tasks_days:
            before = vouched - self.cfg.finished_tasks_days * DAY
            if time.monotonic() >= self._rescan_at:  # kept tasks are looked at again now and then
                self._task_cursor, self._rescan_at = None, time.monotonic() + RESCAN_S

            async def tasks(n: int) -> Batch:
                batch = await self.store.prune_tasks(before, n, self._task_cursor, at)
                self._task_cursor = batch.cursor
                return batch

            out.tasks = await self._drain("tasks", out, tasks)
            # Usage goes with the work it counted; only today's is read (the daily cap).
            day = utc_day(before)
            out.usage = await self._drain("usage", out, lambda n: self.store.prune_usage(day, n))
        out.seconds = round(time.monotonic() - started, 2)
        self.last, self.last_at = out, at
        return out

    async def _drain(self, kind: str, out: Pruned, step: Callable[[int], Awaitable[Batch]]) -> int:
        """Batches until one finds less than it could take; returns the rows deleted."""
        deleted = 0
        while True:
            rows = self._rows[kind]
            batch = await step(rows)
            deleted += batch.deleted
            if batch.held_seconds:
                out.holds_ms.append(batch.held_seconds * 1000)
                self._rows[kind] = self._next_size(rows, batch.held_seconds)
                await asyncio.sleep(batch.held_seconds)
            if batch.scanned < rows:
                return deleted

    def _next_size(self, rows: int, held: float) -> int:
        if held > HOLD_TARGET_S:
            rows = int(rows * HOLD_TARGET_S / held)
        elif held < HOLD_TARGET_S / 2:
            rows *= 2
        return min(self.cfg.batch_size, max(MIN_ROWS, rows))
