"""The one lease/report path: providers reach it over HTTP, the local executor in-process.

A failed report's code goes through the one classification and the one
policy, so a ``FLOOD_WAIT_120`` from a provider cools that account down just
as it would in a setup task. The reaper runs here too, as a side task, and
the counters for ``/metrics`` are kept here, where every path passes.
"""

from __future__ import annotations

import asyncio
import collections
import time
from datetime import UTC, datetime

import msgspec
from prometheus_client import CollectorRegistry, Counter, Histogram

from tgdaemon.classify import ErrorClass, classify_code
from tgdaemon.config import Config
from tgdaemon.groupcommit import GroupCommit
from tgdaemon.policy import account_effect
from tgdaemon.quotas.messages import (
    Done,
    ExtendRequest,
    ExtendResult,
    LeasedTask,
    PullRequest,
    Report,
    ReportResult,
)
from tgdaemon.store import Finish, LeaseAsk, Reaped, Store
from tgdaemon.timeutil import iso, now

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def utc_day(at: float | None = None) -> str:
    """The day a daily cap counts in: UTC, so it does not move with the server's time zone."""
    return datetime.fromtimestamp(now() if at is None else at, UTC).strftime("%Y-%m-%d")


class LeaseMetrics:
    """Counters of the lease/report path, in their own registry that ``/metrics`` adds to its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.leased = Counter("tgfleet_tasks_leased", "Tasks leased, by executor.", ["executor"],
                              registry=self.registry)
        self.reports = Counter("tgfleet_reports", "Reports by status and outcome.", ["status", "outcome"],
                               registry=self.registry)
        self.expired = Counter("tgfleet_leases_expired", "Leases that ran out: returned to pending or failed.",
                               ["result"], registry=self.registry)
        self.latency = Histogram("tgfleet_provider_request_seconds", "Time to answer pull, report and extend.",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)


class Leases:
    def __init__(self, cfg: Config, store: Store) -> None:
        self.cfg = cfg.quotas
        self.limits = cfg.limits
        self.store = store
        self.metrics = LeaseMetrics()
        self.wake_local = asyncio.Event()  # set when tasks may be waiting for the local executor
        self._pulls = GroupCommit(self.store.lease_tasks, "pulls")
        self._reports = GroupCommit(self._finish_many, "reports")

    async def drain(self) -> None:
        """Pulls and reports already received are written before the store closes."""
        await self._pulls.drain()
        await self._reports.drain()

    def lock_seconds(self, lease_seconds: float) -> float:
        """The account stays reserved a little past the lease, so the reaper finds it still ours."""
        return lease_seconds + 2 * self.cfg.reaper_interval_seconds

    def _lease_seconds(self, asked: float | None) -> float:
        return min(asked or self.cfg.lease_seconds, self.cfg.max_lease_seconds)

    async def pull(self, executor: str, req: PullRequest) -> list[LeasedTask]:
        return [task for task, _ in await self.pull_owned(executor, req, None)]

    async def pull_owned(self, executor: str, req: PullRequest,
                         owner: str | None) -> list[tuple[LeasedTask, int | None]]:
        """Leased tasks, each with the ownership epoch of its account when ``owner`` (a node: the local
        executor) asked only for its own accounts' tasks."""
        started = time.perf_counter()
        seconds = self._lease_seconds(req.lease_seconds)
        rows = await self._pulls(LeaseAsk(executor, req.limit, seconds, self.lock_seconds(seconds), owner=owner))
        self.metrics.leased.labels(executor).inc(len(rows))
        self.metrics.latency.labels("pull").observe(time.perf_counter() - started)
        return [(LeasedTask(task_id=r["id"], lease_token=r["lease_token"], account_id=r["account_id"],
                            action=r["action"], target=r["target"], post_id=r["post_id"],
                            subject_type=r["subject_type"], subject_id=r["subject_id"], order_id=None,
                            lease_expires_at=iso(r["lease_expires_at"]) or ""),
                 r["epoch"] if owner is not None else None) for r in rows]

    async def report(self, executor: str, reports: list[Report], *, epoch: int | None = None) -> list[ReportResult]:
        """``epoch``: the local executor's, for one account: applied only while the account is still owned
        under it."""
        started = time.perf_counter()
        at = now()
        outcomes = await self._reports([self._finish(executor, r, at, epoch) for r in reports])
        counted = collections.Counter(("done" if isinstance(r, Done) else "failed", outcome)
                                      for r, outcome in zip(reports, outcomes, strict=True))
        for (status, outcome), n in counted.items():  # a label lookup per kind, not per report
            self.metrics.reports.labels(status, outcome).inc(n)
        self.metrics.latency.labels("report").observe(time.perf_counter() - started)
        return [ReportResult(task_id=r.task_id, outcome=o) for r, o in zip(reports, outcomes, strict=True)]  # type: ignore[arg-type]

    async def _finish_many(self, groups: list[list[Finish]]) -> list[list[str]]:
        """Concurrent reports in one transaction; a task in two of them is applied once."""
        at = now()
        flat = await self.store.finish_tasks([f for group in groups for f in group],
                                             pace_seconds=self.cfg.pace_seconds, day=utc_day(at),
                                             retry_seconds=self.cfg.retry_seconds)
        out, start = [], 0
        for group in groups:
            out.append(flat[start:start + len(group)])
            start += len(group)
        return out

    def _finish(self, executor: str, report: Report, at: float, epoch: int | None) -> Finish:
        if isinstance(report, Done):
            return Finish(executor, report.task_id, report.lease_token, ok=True,
                          observation=msgspec.to_builtins(report.result), epoch=epoch)  # unset fields omitted
        error = classify_code(report.error_code, report.error)
        return Finish(executor, report.task_id, report.lease_token, ok=False, error_code=error.wire, error=report.error,
                      effect=account_effect(error, self.limits, at), target_failed=error.kind is ErrorClass.TARGET,
                      retry_quota=error.kind in (ErrorClass.TRANSIENT, ErrorClass.INPUT), epoch=epoch)

    async def extend(self, executor: str, req: ExtendRequest) -> list[ExtendResult]:
        started = time.perf_counter()
        seconds = self._lease_seconds(req.lease_seconds)
        outcomes = await self.store.extend_leases(executor, [(lease.task_id, lease.lease_token) for lease in req.leases],
                                                  seconds, self.lock_seconds(seconds))
        self.metrics.latency.labels("extend").observe(time.perf_counter() - started)
        return [ExtendResult(task_id=lease.task_id, outcome=o, lease_expires_at=iso(until))  # type: ignore[arg-type]
                for lease, (o, until) in zip(req.leases, outcomes, strict=True)]

    async def reap(self) -> Reaped:
        reaped = await self.store.reap_leases(self.cfg.max_leases, self.lock_seconds(self.cfg.lease_seconds))
        self.metrics.expired.labels("returned").inc(reaped.returned)
        self.metrics.expired.labels("failed").inc(reaped.failed)
        self.metrics.expired.labels("unpulled").inc(reaped.unpulled)
        if reaped.returned:
            self.wake_local.set()
        return reaped

    async def run_reaper(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.reaper_interval_seconds)
            await self.reap()
