"""Control routes of the tasks view (issue 15): setup and pulled tasks listed together with their queues' counts,
one task with its attempts, the operator's retry by ids or by filter, and the pulse.

The store knows lanes (a setup task's type, a pulled task's executor); queues are this layer's: a setup type's
queue is ``TASKS[type].queue`` (fast or media), a pulled task's ``pulled:EXECUTOR``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Annotated, Any

import msgspec
from aiohttp import web

from tgdaemon.control.ids import MAX_ID
from tgdaemon.errors import ApiError
from tgdaemon.httpjson import json_response, read_body, read_query
from tgdaemon.runtime import RUNTIME, Runtime
from tgdaemon.setup.tasks import QUEUES, TASKS
from tgdaemon.store import TaskFilter
from tgdaemon.store.api import SETUP_ATTEMPTS_KEPT
from tgdaemon.timeutil import iso, now
from tgdaemon.wire import (
    ACTIONS,
    AnyTaskStatus,
    Pulse,
    PulseQueue,
    Task,
    TaskAttempt,
    TaskDetail,
    TaskKind,
    TaskList,
    TaskRefusal,
    TasksRetried,
)

PULLED = "pulled:"
MAX_PULSE_MINUTES = 120  # the store keeps two hours of minutes (migration 0016 / 0007)
Id = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]


class TaskQuery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The filter of ``GET /tasks`` and ``POST /tasks/retry``; every field given narrows it."""

    kind: TaskKind | None = None
    status: AnyTaskStatus | None = None
    queue: str | None = None  # fast, media or pulled:EXECUTOR
    type: str | None = None  # a setup task type or a pulled action
    account_id: Id | None = None


class TasksQuery(TaskQuery, forbid_unknown_fields=True, kw_only=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000  # of each kind


class RetryBody(TaskQuery, forbid_unknown_fields=True, kw_only=True):
    ids: list[str] | None = None  # kind:id, e.g. setup:12 or pulled:7; alone (no filter with it)
    dry_run: bool = False


class PulseQuery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    minutes: Annotated[int, msgspec.Meta(ge=1, le=MAX_PULSE_MINUTES)] = 60


def queue_of(kind: str, lane: str) -> str | None:
    """A lane's queue: a setup type's (None for a type this daemon no longer knows), or pulled:EXECUTOR."""
    if kind == "pulled":
        return PULLED + (lane or "local")
    spec = TASKS.get(lane)
    return spec.queue if spec is not None else None


def parse_key(key: str) -> tuple[str, int]:
    """``setup:12`` → ("setup", 12); anything else is the caller's mistake, said in one line."""
    kind, sep, number = key.partition(":")
    if not sep or kind not in ("setup", "pulled") or not number.isdigit() or not 1 <= int(number) <= MAX_ID:
        raise ApiError(f"task {key!r}: expected KIND:ID, KIND setup or pulled and ID a positive number",
                       code="invalid_task")
    return kind, int(number)


async def task_filter(rt: Runtime, q: TaskQuery) -> TaskFilter | None:
    """The store's filter for a query; None when the query can match nothing (a queue of the other kind)."""
    kind = q.kind
    types: tuple[str, ...] | None = None
    executor: str | None = None
    if q.type is not None:
        if q.type not in TASKS and q.type not in ACTIONS:
            raise ApiError(f"type: no such task type {q.type!r} (setup: {', '.join(TASKS)}; pulled:"
                           f" {', '.join(ACTIONS)})", code="invalid_query")
        types = (q.type,)
    if q.queue is not None:
        if q.queue in QUEUES:
            queue_kind = "setup"
            in_queue = tuple(t for t, spec in TASKS.items() if spec.queue == q.queue)
            types = in_queue if types is None else tuple(t for t in types if t in in_queue)
        elif q.queue.startswith(PULLED) and len(q.queue) > len(PULLED):
            queue_kind, executor = "pulled", q.queue[len(PULLED):]
        else:
            raise ApiError(f"queue: expected {', '.join(QUEUES)} or pulled:EXECUTOR, got {q.queue!r}",
                           code="invalid_query")
        if kind is not None and kind != queue_kind or not (types is None or types):
            return None
        kind = queue_kind  # type: ignore[assignment]
    if q.account_id is not None:
        await rt.store.get_account(q.account_id)  # NotFound: "no such account", not an empty answer
    return TaskFilter(kind=kind, status=q.status, types=types, executor=executor, account_id=q.account_id)


def blocked_by(rt: Runtime, r: dict[str, Any], at: float) -> str | None:
    """Why a waiting task does not run: a setup task's reasons are the scheduler's; a pending pulled task waits
    for its account, or for the executor that pulls it."""
    if r["kind"] == "setup":
        return rt.setup.blocked_by(r, at)
    if r["status"] != "pending":
        return None
    if r["disabled_at"] is not None:
        return "disabled"
    if not r["is_active"]:
        return "inactive"
    if r["cooldown_until"] and r["cooldown_until"] > at:
        return f"cooldown until {iso(r['cooldown_until'])} ({r['cooldown_reason']})"
    holder = r["lock_holder"]
    if holder and holder != f"quota:{r['id']}":
        kind, _, task_id = holder.partition(":")
        return f"lock held by {kind} task {task_id}"
    if r["executor"] and r["executor"] != "local":
        return f"waits for provider {r['executor']} to pull it"
    if rt.cfg.quotas.local_concurrency == 0:
        return "local executor off (quotas.local_concurrency = 0)"
    return None


def task_wire(rt: Runtime, r: dict[str, Any], at: float) -> Task:
    lane = r["task_type"] if r["kind"] == "setup" else (r["executor"] or "")
    return Task(
        key=f"{r['kind']}:{r['id']}", kind=r["kind"], id=r["id"], account_id=r["account_id"], label=r["label"],
        task_type=r["task_type"], queue=queue_of(r["kind"], lane), status=r["status"], attempts=r["attempts"],
        retry_at=iso(r["retry_at"]), last_error_code=r["last_error_code"], last_error=r["last_error"],
        blocked_by=blocked_by(rt, r, at), result=json.loads(r["result_json"] or "{}"),
        created_at=iso(r["created_at"]) or "", updated_at=iso(r["updated_at"]) or "",
        executor=r["executor"], quota_id=r.get("subject_id"), post_id=r.get("post_id"))


async def queue_counts(rt: Runtime) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {q: {} for q in QUEUES}
    for c in await rt.store.lane_counts():
        queue = queue_of(c.kind, c.lane) or "unknown"
        counts = out.setdefault(queue, {})
        counts[c.status] = counts.get(c.status, 0) + c.n
    return out


async def list_tasks(request: web.Request) -> web.Response:
    query = read_query(request, TasksQuery)
    rt = request.config_dict[RUNTIME]
    f = await task_filter(rt, query)
    rows = [] if f is None else await rt.store.list_tasks(f, query.limit)
    at = now()
    return json_response(TaskList(tasks=[task_wire(rt, r, at) for r in rows], counts=await queue_counts(rt)))


async def show_task(request: web.Request) -> web.Response:
    kind, task_id = parse_key(f"{request.match_info['kind']}:{request.match_info['id']}")
    rt = request.config_dict[RUNTIME]
    task = await rt.store.get_task(kind, task_id)
    attempts = await rt.store.task_attempts(kind, task_id)
    return json_response(TaskDetail(task=task_wire(rt, task, now()), attempts=[TaskAttempt(
        attempt=a["attempt"], started_at=iso(a["started_at"]), ended_at=iso(a["ended_at"]) or "",
        seconds=None if a["started_at"] is None else round(max(0.0, a["ended_at"] - a["started_at"]), 3),
        node=a["node"], executor=a["executor"], outcome=a["outcome"], error_code=a["error_code"],
        error=a["error"]) for a in attempts], attempts_kept=SETUP_ATTEMPTS_KEPT if kind == "setup" else None))


async def retry_tasks(request: web.Request) -> web.Response:
    body = await read_body(request, RetryBody)
    rt = request.config_dict[RUNTIME]
    narrowed = any(v is not None for v in (body.status, body.queue, body.type, body.account_id))
    if body.ids is not None:
        if narrowed or body.kind is not None:
            raise ApiError("ids: give ids or a filter, not both", code="invalid_body")
        if not body.ids:
            raise ApiError("ids: empty; give at least one KIND:ID", code="invalid_body")
        f: TaskFilter | None = TaskFilter(ids=tuple(parse_key(k) for k in body.ids))
    elif not narrowed:
        raise ApiError("retry needs ids or a filter (status, queue, type or account_id): it never retries every task",
                       code="invalid_body")
    else:
        f = await task_filter(rt, body)
    if f is None:
        return json_response(TasksRetried(matched=0, retried=0, refused=[], refused_count=0, dry_run=body.dry_run))
    out = await rt.store.retry_tasks(f, dry_run=body.dry_run,
                                     pulled_window=rt.leases.lock_seconds(rt.cfg.quotas.lease_seconds))
    if out.retried and not out.dry_run:
        rt.setup.wake()
        rt.leases.wake_local.set()
    return json_response(TasksRetried(matched=out.matched, retried=out.retried, dry_run=out.dry_run,
                                      refused=[TaskRefusal(task=f"{k}:{i}", reason=why) for k, i, why in out.refused],
                                      refused_count=out.refused_count))


def pulse_queues(counts: Iterable[Any], start: int, minutes: int) -> dict[str, PulseQueue]:
    """Per queue, attempts done and not done per minute from ``start`` on (``minutes`` of them)."""
    out = {q: PulseQueue(done=[0] * minutes, failed=[0] * minutes) for q in QUEUES}
    for c in counts:
        index = (c.minute - start) // 60
        queue = queue_of(c.kind, c.lane)
        if queue is None or not 0 <= index < minutes:
            continue
        row = out.setdefault(queue, PulseQueue(done=[0] * minutes, failed=[0] * minutes))
        (row.done if c.outcome == "done" else row.failed)[index] += c.n
    return out


async def pulse(request: web.Request) -> web.Response:
    query = read_query(request, PulseQuery)
    rt = request.config_dict[RUNTIME]
    at = now()
    start = int(at // 60 * 60) - (query.minutes - 1) * 60
    counts = await rt.store.pulse(start)
    return json_response(Pulse(at=iso(at) or "", minutes=query.minutes,
                               queues=pulse_queues(counts, start, query.minutes)))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/tasks", list_tasks)
    app.router.add_get("/tasks/{kind}/{id}", show_task)
    app.router.add_post("/tasks/retry", retry_tasks)
    app.router.add_get("/pulse", pulse)
