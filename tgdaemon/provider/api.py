"""The provider API on TCP: ``/healthz`` in the open, everything under ``/api/provider/`` behind a bearer token.

The authenticated routes live in their own sub-application, so the token
check (``provider.auth.require_provider``) guards every route added there by
construction rather than by remembering a decorator. Pull and report come
in ``provider.tasks``; ``whoami`` lets a provider check its token.
"""

from __future__ import annotations

from aiohttp import web

from tgdaemon.httpjson import json_response
from tgdaemon.provider.auth import AUTH, PROVIDER, ProviderAuth, require_provider
from tgdaemon.provider.metrics import metrics
from tgdaemon.provider.openapi import openapi
from tgdaemon.provider.tasks import add_routes as add_task_routes
from tgdaemon.runtime import RUNTIME


async def healthz(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    return json_response({"ok": True, "uptime_seconds": round(rt.uptime(), 1)})


async def whoami(request: web.Request) -> web.Response:
    return json_response({"provider": request[PROVIDER]})


def create_provider_app() -> web.Application:
    """The authenticated part, mounted at ``/api/provider/``."""
    app = web.Application(middlewares=[require_provider])
    app[AUTH] = ProviderAuth()
    app.router.add_get("/whoami", whoami)
    app.router.add_get("/openapi.json", openapi)
    add_task_routes(app)
    return app


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.add_subapp("/api/provider/", create_provider_app())
