"""The provider API on TCP: ``/healthz`` in the open, everything under ``/api/provider/`` behind a bearer token.

``/healthz`` is what a load balancer or a monitor asks: 200 while the daemon
takes work, 503 (Retry-After, ``ok: false`` and why) while its database
cannot be reached; the process is alive then and comes back by itself, so a
liveness check should not restart it for that (docs/postgresql.md).

The authenticated routes live in their own sub-application, so the token
check (``provider.auth.require_provider``) guards every route added there by
construction rather than by remembering a decorator. Pull and report come
in ``provider.tasks``; ``whoami`` lets a provider check its token.
"""

from __future__ import annotations

from aiohttp import web

from tgdaemon.httpjson import RETRY_AFTER_SECONDS, json_response
from tgdaemon.provider.auth import AUTH, PROVIDER, ProviderAuth, require_provider
from tgdaemon.provider.metrics import metrics
from tgdaemon.provider.openapi import Health, openapi
from tgdaemon.provider.tasks import add_routes as add_task_routes
from tgdaemon.runtime import RUNTIME


async def healthz(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    store = rt.storewatch.status()
    health = Health(ok=store.down is None, uptime_seconds=round(rt.uptime(), 1), store_down=store.down,
                    store_down_since=store.down_since)
    if health.ok:
        return json_response(health)
    response = json_response(health, status=503)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


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
