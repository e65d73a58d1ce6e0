"""``/api/provider/telegram/tasks/pull|report|extend``: the HTTP door to the one lease/report path."""

from __future__ import annotations

from aiohttp import web

from tgdaemon.httpjson import json_response, read_body
from tgdaemon.provider.auth import PROVIDER
from tgdaemon.quotas.messages import (
    ExtendRequest,
    ExtendResponse,
    PullRequest,
    PullResponse,
    Report,
    ReportRequest,
    ReportResponse,
)
from tgdaemon.runtime import RUNTIME


async def pull(request: web.Request) -> web.Response:
    body = await read_body(request, PullRequest)
    leases = request.config_dict[RUNTIME].leases
    return json_response(PullResponse(tasks=await leases.pull(request[PROVIDER], body)))


async def report(request: web.Request) -> web.Response:
    """One report (an object) or a batch (an array); each is answered, in order."""
    body: Report | list[Report] = await read_body(request, ReportRequest)  # type: ignore[arg-type]
    reports = body if isinstance(body, list) else [body]
    leases = request.config_dict[RUNTIME].leases
    return json_response(ReportResponse(results=await leases.report(request[PROVIDER], reports)))


async def extend(request: web.Request) -> web.Response:
    body = await read_body(request, ExtendRequest)
    leases = request.config_dict[RUNTIME].leases
    return json_response(ExtendResponse(results=await leases.extend(request[PROVIDER], body)))


ROUTES = {
    "/telegram/tasks/pull": (pull, PullRequest, PullResponse, "Lease pending tasks of the accounts assigned to"
                                                               " this provider, oldest first."),
    "/telegram/tasks/report": (report, ReportRequest, ReportResponse, "Report one task (an object) or a batch (an"
                                                                      " array); each report is answered in order."),
    "/telegram/tasks/extend": (extend, ExtendRequest, ExtendResponse, "Extend live leases."),
}


def add_routes(app: web.Application) -> None:
    for path, (handler, *_) in ROUTES.items():
        app.router.add_post(path, handler)
