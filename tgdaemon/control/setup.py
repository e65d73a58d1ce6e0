"""Control routes for the setup pipeline: dispatch, an account's retry, and the task list."""

from __future__ import annotations

import json
from typing import Annotated

import msgspec
from aiohttp import web

from tgdaemon.control.ids import MAX_ID, path_id
from tgdaemon.httpjson import json_response, read_query
from tgdaemon.runtime import RUNTIME
from tgdaemon.setup.tasks import TASKS
from tgdaemon.timeutil import iso, now
from tgdaemon.wire import Dispatched, Retried, SetupTask, TaskList, TaskStatus


class TasksQuery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    account_id: Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)] | None = None
    status: TaskStatus | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000


async def dispatch(request: web.Request) -> web.Response:
    scheduler = request.config_dict[RUNTIME].setup
    created, due = await scheduler.dispatch()
    return json_response(Dispatched(created=created, due=due, enabled=scheduler.enabled))


async def retry_account(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    count = await rt.store.retry_account_setup(path_id(request))
    rt.setup.wake()
    return json_response(Retried(tasks=count))


async def list_tasks(request: web.Request) -> web.Response:
    query = read_query(request, TasksQuery)
    rt = request.config_dict[RUNTIME]
    rows = await rt.store.setup_tasks(account_id=query.account_id, status=query.status, limit=query.limit)
    at = now()
    return json_response(TaskList(tasks=[SetupTask(
        id=r["id"], account_id=r["account_id"], label=r["label"], task_type=r["task_type"],
        queue=TASKS[r["task_type"]].queue if r["task_type"] in TASKS else None, status=r["status"],
        attempts=r["attempts"], retry_at=iso(r["retry_at"]), last_error_code=r["last_error_code"],
        last_error=r["last_error"], blocked_by=rt.setup.blocked_by(r, at),
        result=json.loads(r["result_json"] or "{}"), updated_at=iso(r["updated_at"]),
    ) for r in rows]))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/setup/dispatch", dispatch)
    app.router.add_post("/accounts/{id}/retry", retry_account)
    app.router.add_get("/tasks", list_tasks)
