"""Control routes for account health and sessions; the logic is in ``tgdaemon.health.check``."""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from tgdaemon.control.ids import MAX_ID, path_id
from tgdaemon.errors import NotFound
from tgdaemon.httpjson import json_response, read_body
from tgdaemon.runtime import RUNTIME
from tgdaemon.timeutil import iso
from tgdaemon.wire import HealthCheck, HealthChecks, Session, SessionList

MAX_CHECK = 1000  # accounts in one request: `accounts check --all` sends the fleet in batches


class CheckBody(msgspec.Struct, forbid_unknown_fields=True):
    ids: Annotated[list[Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]], msgspec.Meta(min_length=1,
                                                                                  max_length=MAX_CHECK)]


async def check_accounts(request: web.Request) -> web.Response:
    """Check these accounts now, each once (in the order given); answered when every check has ended."""
    body = await read_body(request, CheckBody)
    rt = request.config_dict[RUNTIME]
    ids = list(dict.fromkeys(body.ids))
    labels = {a["id"]: a["label"] for a in await rt.store.accounts_by_id(None, ids)}
    if missing := [i for i in ids if i not in labels]:
        raise NotFound(f"account {missing[0]}: no such account")
    results = await rt.health.check(ids)
    return json_response(HealthChecks(results=[HealthCheck(
        account_id=r.account_id, label=labels[r.account_id], outcome=r.outcome, health=r.health,  # type: ignore[arg-type]
        detail=r.detail, message=r.message) for r in results]))


async def account_sessions(request: web.Request) -> web.Response:
    account_id = path_id(request)
    found = await request.config_dict[RUNTIME].health.sessions(account_id)
    return json_response(SessionList(account_id=account_id, sessions=[Session(
        hash=a.hash, current=a.current, device_model=a.device_model, platform=a.platform,
        system_version=a.system_version, app_name=a.app_name, app_version=a.app_version, api_id=a.api_id,
        official_app=a.official_app, country=a.country, region=a.region, created=iso(a.created or None),
        active=iso(a.active or None)) for a in found]))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/accounts/check", check_accounts)
    app.router.add_get("/accounts/{id}/sessions", account_sessions)
