"""Control routes for the setup pipeline: dispatch and an account's retry (the task list: control/tasks.py)."""

from __future__ import annotations

from aiohttp import web

from tgdaemon.control.ids import path_id
from tgdaemon.httpjson import json_response
from tgdaemon.runtime import RUNTIME
from tgdaemon.wire import Dispatched, Retried


async def dispatch(request: web.Request) -> web.Response:
    scheduler = request.config_dict[RUNTIME].setup
    created, due = await scheduler.dispatch()
    return json_response(Dispatched(created=created, due=due, enabled=scheduler.enabled))


async def retry_account(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    count = await rt.store.retry_account_setup(path_id(request))
    rt.setup.wake()
    return json_response(Retried(tasks=count))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/setup/dispatch", dispatch)
    app.router.add_post("/accounts/{id}/retry", retry_account)
