"""The local executor: the daemon runs the tasks of accounts assigned to ``local`` itself.

It pulls and reports through ``Leases`` exactly as a provider does over HTTP
(same fencing, same outcomes, same classification of failures), so both
paths are always exercised. A task cut off by a shutdown is simply not
reported: its lease runs out and the reaper hands it out again.

Several nodes (design 9): each node's executor leases only tasks of the accounts that node owns, and
reports with the epoch it owned the account under (a report after the account moved changes nothing).
A task whose account the node is letting go of is not reported either: the next owner's acquisition
puts it back to pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tgdaemon.classify import ErrorClass, classify, classify_code
from tgdaemon.errors import NotOwned
from tgdaemon.gateway.base import AccountRef, Gateway
from tgdaemon.quotas.leases import Leases
from tgdaemon.quotas.messages import (
    Done,
    Failed,
    LeasedTask,
    Observation,
    PullRequest,
    Report,
)
from tgdaemon.store import Store

log = logging.getLogger(__name__)
NAME = "local"
IDLE_SECONDS = 1.0


class LocalExecutor:
    def __init__(self, store: Store, gateway: Gateway, leases: Leases, concurrency: int, *,
                 owner: str | None = None) -> None:
        self.store = store
        self.gateway = gateway
        self.leases = leases
        self.concurrency = concurrency
        self.owner = owner  # the node whose accounts' tasks it serves; None: every account's
        self._running: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        if self.concurrency == 0:
            await asyncio.Event().wait()  # off: nothing to do, but a side task that returns stops the daemon
        try:
            while True:
                # A fenced node could run none of what it leased: each lease left to run out would cost its
                # task one of its max_leases for nothing.
                free = self.concurrency - len(self._running) if self.gateway.gate.seconds_left() > 0 else 0
                leased = await self.leases.pull_owned(NAME, PullRequest(limit=free), self.owner) if free else []
                for task, epoch in leased:
                    job = asyncio.create_task(self._work(task, epoch), name=f"quota-task-{task.task_id}")
                    self._running.add(job)
                    job.add_done_callback(self._running.discard)
                if not leased or len(self._running) >= self.concurrency:
                    await self._idle()
        finally:
            for job in self._running:
                job.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._running, return_exceptions=True)

    async def _idle(self) -> None:
        """Until a slot frees (when full), new tasks may be waiting (when not), or a second passes."""
        if len(self._running) >= self.concurrency:
            await asyncio.wait(self._running, timeout=IDLE_SECONDS, return_when=asyncio.FIRST_COMPLETED)
            return
        self.leases.wake_local.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.leases.wake_local.wait(), IDLE_SECONDS)

    async def _work(self, task: LeasedTask, epoch: int | None) -> None:
        if not self.gateway.gate.allows(task.account_id):
            return  # being let go of: not reported, the next owner takes the task up again
        with self.gateway.gate.working(task.account_id):
            try:
                report = await self.execute(task)
            except NotOwned:
                return  # let go of: not reported, the next owner takes the task up again
            await self.leases.report(NAME, [report], epoch=epoch)
        if isinstance(report, Failed) and classify_code(report.error_code).kind is ErrorClass.DEAD_ACCOUNT:
            await self.gateway.forget(task.account_id)  # now disabled: its client goes, as in setup

    async def execute(self, task: LeasedTask) -> Report:
        """One read as the task's account; an error becomes a failed report with Telegram's code (but
        ``NotOwned``, which is no outcome of the task: it raises)."""
        try:
            account = AccountRef(task.account_id, *await self.store.account_ref(task.account_id))
            channel = await self.gateway.resolve_channel(account, task.target)
            if task.action == "post_stats" and task.post_id is not None:
                stats = await self.gateway.post_stats(account, channel, task.post_id)
                result = Observation(views=stats.views, forwards=stats.forwards, replies=stats.replies,
                                     reactions=sum(stats.reactions.values()),
                                     reactions_by_emoji=dict(stats.reactions) or None)
            else:
                channel_stats = await self.gateway.channel_stats(account, channel)
                result = Observation(subscribers=channel_stats.subscribers, title=channel_stats.title)
        except NotOwned:
            raise
        except Exception as exc:
            error = classify(exc)
            return Failed(task_id=task.task_id, lease_token=task.lease_token, error_code=error.wire,
                          error=error.message)
        return Done(task_id=task.task_id, lease_token=task.lease_token, result=result)
