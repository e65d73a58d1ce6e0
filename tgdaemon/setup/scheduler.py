"""Dispatch and execution of setup tasks: two queues with their own concurrency, one lock per account.

Retries happen through ``retry_at``, never by running a task again on the
spot; a wait (FLOOD_WAIT, PEER_FLOOD) holds the account in cooldown and costs
the task no attempt. On shutdown the scheduler stops claiming, gives running
tasks a grace period, then cancels the rest, which go back to ``retry``.

Outcomes are group-committed, and the transaction that records a batch of them
claims, after it, the tasks for the slots they free (``finish_and_claim_setup``):
one transaction a round of the queues. The queues' own loops claim at start,
after a wake (dispatch, retry, enable) and every ``POLL_SECONDS``. A slot being
claimed for is reserved, so that the two never claim one slot twice.

Several nodes (design 9): the queues run on every node, each claiming only the tasks of the accounts
it owns (``owner``); dispatch creates tasks for the whole fleet and runs on the leader only
(``run_dispatch``). A task whose account this node is letting go of (its gate says no, before or
during the task) goes back to retry with its attempt refunded: that is not the account's doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from tgdaemon.classify import Classified, ErrorClass, TaskWait, classify
from tgdaemon.config import Config
from tgdaemon.errors import NotOwned
from tgdaemon.gateway.base import AccountRef, Gateway
from tgdaemon.groupcommit import GroupCommit
from tgdaemon.policy import account_effect
from tgdaemon.setup.secrets import PasswordSource
from tgdaemon.setup.tasks import QUEUES, TASKS, MediaProbes, TaskContext, required_tasks
from tgdaemon.store import AccountEffect, ClaimedTask, SetupOutcome, Store
from tgdaemon.timeutil import iso, now

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0


def stopped() -> SetupOutcome:
    """For a claimed task the scheduler stopped before starting: back to retry, due now, its attempt given back."""
    return SetupOutcome("retry", AccountEffect(), error="the daemon stopped", retry_at=now(), refund_attempt=True)


class SetupScheduler:
    def __init__(self, cfg: Config, store: Store, gateway: Gateway, workdir: Path, *,
                 owner: str | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.gateway = gateway
        self.workdir = workdir
        self.owner = owner  # the node whose accounts' tasks this scheduler runs; None: every account
        self.passwords = PasswordSource(cfg.setup.twofa)
        self.media = MediaProbes()
        self._wakes = {q: asyncio.Event() for q in QUEUES}
        self._types = {q: [name for name, spec in TASKS.items() if spec.queue == q] for q in QUEUES}
        self._running: dict[str, set[asyncio.Task[None]]] = {q: set() for q in QUEUES}
        self._job_of: dict[int, asyncio.Task[None]] = {}  # task id -> the job running it, until its finish
        self._ending: set[asyncio.Task[None]] = set()  # jobs past their finish, returning (a forget, say)
        self._reserved = dict.fromkeys(QUEUES, 0)  # slots a claim in flight is for
        self._limits = {"fast": cfg.setup.queues.fast_concurrency, "media": cfg.setup.queues.media_concurrency}
        self._finish = GroupCommit(self._finish_many, "setup finisher")
        self._giving_back: set[asyncio.Future[None]] = set()
        self._stopping = False

    @property
    def enabled(self) -> bool:
        return self.cfg.setup.enabled

    def wake(self) -> None:
        """Look for due work now (after a dispatch, a retry, an enable) rather than at the next poll."""
        for event in self._wakes.values():
            event.set()

    def queue_full(self, queue: str) -> bool:
        return self._free(queue) <= 0

    def _free(self, queue: str) -> int:
        return self._limits[queue] - len(self._running[queue]) - self._reserved[queue]

    def running(self) -> int:
        return sum(len(r) for r in self._running.values())

    async def dispatch(self) -> tuple[int, int]:
        created, due = await self.store.dispatch_setup(required_tasks(self.cfg.setup))
        self.wake()
        return created, due

    async def run(self) -> None:
        """The side task: recover, then feed both queues until cancelled. Run again after the database was
        lost: the tasks whose outcome could not be written then go back to retry."""
        self._stopping = False
        recovered = await self.store.recover_setup(owner=self.owner)
        if recovered:
            log.info("setup: %d tasks were left running (the daemon stopped, or lost its database); they will be"
                     " retried", recovered)
        loops = [asyncio.create_task(self._feed(q), name=f"setup {q} queue") for q in QUEUES]
        try:
            await asyncio.gather(*loops)
        finally:
            self._stopping = True  # a batch of outcomes being written now claims nothing, or gives it back
            for loop in loops:
                loop.cancel()
            # gather ends with the first loop cancelled; the other may still be handing back its claim
            await asyncio.wait(loops)
            await self._drain()

    async def run_dispatch(self) -> None:
        """The leader's side task: the fleet's tasks created on schedule (nothing while setup is off)."""
        if not self.enabled:
            await asyncio.Event().wait()
        while True:
            created, due = await self.dispatch()
            if created:
                log.info("setup dispatch: created %d tasks, %d due", created, due)
            await asyncio.sleep(self.cfg.setup.dispatch_interval_seconds)

    async def _feed(self, queue: str) -> None:
        wake = self._wakes[queue]
        while True:
            wake.clear()
            free = self._free(queue)
            claimed = await self._claim(queue, free) if self.enabled and free > 0 else []
            if claimed and len(claimed) == free:
                continue  # a full batch: more may be due right away once a slot frees
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), POLL_SECONDS)

    def _start(self, queue: str, tasks: list[ClaimedTask]) -> None:
        running = self._running[queue]
        for task in tasks:
            job = asyncio.create_task(self._execute(task), name=f"setup task {task.id}")
            running.add(job)
            self._job_of[task.id] = job
            job.add_done_callback(functools.partial(self._ended, running, task.id))

    def _ended(self, running: set[asyncio.Task[None]], task_id: int, job: asyncio.Task[None]) -> None:
        running.discard(job)
        self._ending.discard(job)
        if self._job_of.get(task_id) is job:
            del self._job_of[task_id]

    def _finished(self, items: list[tuple[ClaimedTask, SetupOutcome]]) -> None:
        """Their outcomes are written: their jobs hold no slot any more, though they may still be returning."""
        for task, _ in items:
            if (job := self._job_of.pop(task.id, None)) is not None and not job.done():
                self._running[TASKS[task.task_type].queue].discard(job)
                self._ending.add(job)

    async def _claim(self, queue: str, limit: int) -> list[ClaimedTask]:
        """A claim that a shutdown cannot cut in half: tasks it claimed go straight back to retry, by a task of
        their own that ``_drain`` waits for (a second cancel of this one cannot cut that short either)."""
        self._reserved[queue] += limit
        claim = asyncio.ensure_future(self.store.claim_setup(
            self._types[queue], limit, self.cfg.setup.lock_seconds, owner=self.owner))
        try:
            claimed = await asyncio.shield(claim)
        except asyncio.CancelledError:
            self._giving_back.add(asyncio.ensure_future(self._give_back(claim)))
            raise
        finally:
            self._reserved[queue] -= limit
        self._start(queue, claimed)
        return claimed

    async def _give_back(self, claim: asyncio.Future[list[ClaimedTask]]) -> None:
        await self.store.finish_setup_many([(task, stopped()) for task in await claim])

    async def _execute(self, task: ClaimedTask) -> None:
        with self.gateway.gate.working(task.account_id):
            await self._run_task(task)

    async def _run_task(self, task: ClaimedTask) -> None:
        spec = TASKS[task.task_type]
        ctx = TaskContext(self.gateway, AccountRef(task.account_id, task.tg_user_id, task.phone), task,
                          self.cfg.setup, self.passwords, self.workdir, self.media)
        if not self.gateway.gate.allows(task.account_id):  # being let go: not claimed again at once
            await self._finish((task, SetupOutcome("retry", AccountEffect(), error=NotOwned.__doc__,
                                                   retry_at=now() + POLL_SECONDS, refund_attempt=True)))
            return
        try:
            result = await spec.run(ctx)
            name = result.get("name")
            outcome = SetupOutcome("done", AccountEffect(ok=True, name=tuple(name) if name else None), result=result)
        except asyncio.CancelledError:
            outcome = SetupOutcome("retry", AccountEffect(), error="the daemon stopped during the task",
                                   retry_at=now(), refund_attempt=True)
            await asyncio.shield(self._finish((task, outcome)))
            raise
        except NotOwned as exc:  # the node let the account go during the task: its next owner goes on
            outcome = SetupOutcome("retry", AccountEffect(), error=str(exc), retry_at=now(), refund_attempt=True)
        except TaskWait as exc:  # the task's own wait, not the account's: no cooldown, no attempt spent
            outcome = SetupOutcome("retry", AccountEffect(), error=classify(exc).message, retry_at=exc.until,
                                   refund_attempt=True)
        except Exception as exc:
            outcome = self.on_error(task, classify(exc))
        await asyncio.shield(self._finish((task, outcome)))  # once the outcome is known it is recorded, stop or not
        if outcome.effect.disable_reason is not None:
            await self.gateway.forget(task.account_id)

    async def _finish_many(self, items: list[tuple[ClaimedTask, SetupOutcome]]) -> list[None]:
        """The outcomes, and in the same transaction the tasks for the slots they free: each queue's free slots,
        those of the tasks finishing here among them (their ends are written before the new starts)."""
        if self._stopping or not self.enabled:
            await self.store.finish_setup_many(items)
            self._finished(items)
            return [None] * len(items)
        finishing = Counter(TASKS[task.task_type].queue for task, _ in items if task.id in self._job_of)
        want = {q: max(0, self._free(q) + finishing[q]) for q in QUEUES}
        for queue, n in want.items():
            self._reserved[queue] += n
        try:
            claimed = await self.store.finish_and_claim_setup(
                items, [(self._types[q], n) for q, n in want.items()], self.cfg.setup.lock_seconds, owner=self.owner)
        finally:
            for queue, n in want.items():
                self._reserved[queue] -= n
        self._finished(items)
        for queue, tasks in zip(want, claimed, strict=True):
            if self._stopping:  # claimed while the scheduler began to stop: straight back to retry
                await self.store.finish_setup_many([(task, stopped()) for task in tasks])
            else:
                self._start(queue, tasks)
        return [None] * len(items)

    def on_error(self, task: ClaimedTask, error: Classified) -> SetupOutcome:
        """Design sections 4 and 6: waits retry at the cooldown's end, free; the transient back off."""
        at = now()
        effect = account_effect(error, self.cfg.limits, at)
        if error.kind in (ErrorClass.WAIT, ErrorClass.SPAM_LIMITED, ErrorClass.PROXY):
            return SetupOutcome("retry", effect, error=error.message, retry_at=effect.cooldown_until,
                                refund_attempt=True)
        if error.kind is ErrorClass.TRANSIENT and task.attempts < self.cfg.setup.retry.max_attempts:
            backoff = self.cfg.setup.retry.backoff_seconds
            return SetupOutcome("retry", effect, error=error.message,
                                retry_at=at + backoff[min(task.attempts, len(backoff)) - 1])
        return SetupOutcome("failed", effect, error=error.message)

    async def _drain(self) -> None:
        """Stop: running tasks get a grace period to finish, then are cancelled (and go back to retry)."""
        if self._giving_back:
            await asyncio.gather(*self._giving_back, return_exceptions=True)
            self._giving_back.clear()
        jobs = [job for running in self._running.values() for job in running] + list(self._ending)
        if jobs:
            _, pending = await asyncio.wait(jobs, timeout=self.cfg.daemon.shutdown_timeout_seconds / 4)
            for job in pending:
                job.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._finish.drain()  # outcomes already known are written before the store closes

    def blocked_by(self, row: dict[str, Any], at: float) -> str | None:
        """Why a waiting task is not running now; None when it is running, finished, or about to run."""
        if row["status"] not in ("pending", "retry"):
            return None
        if row["disabled_at"] is not None:
            return "disabled"
        if not row["is_active"]:
            return "inactive"
        if row["is_probe"]:
            return "probe account"
        if row["cooldown_until"] and row["cooldown_until"] > at:
            return f"cooldown until {iso(row['cooldown_until'])} ({row['cooldown_reason']})"
        if row["retry_at"] and row["retry_at"] > at:
            return f"retry_at {iso(row['retry_at'])}"
        if row["lock_holder"]:
            kind, _, task_id = row["lock_holder"].partition(":")
            return f"lock held by {kind} task {task_id}"
        if not self.enabled:
            return "setup off"
        if self.queue_full(TASKS[row["task_type"]].queue):
            return "queue full"
        return None
