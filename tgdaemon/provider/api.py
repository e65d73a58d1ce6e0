"""The provider API on TCP. So far only the health check; pull and report come with quotas."""

from __future__ import annotations

from aiohttp import web

from tgdaemon.httpjson import json_response
from tgdaemon.runtime import RUNTIME


async def healthz(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    return json_response({"ok": True, "uptime_seconds": round(rt.uptime(), 1)})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
