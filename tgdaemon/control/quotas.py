"""Control routes for quotas: add, list, pause, resume, and the export of measurements."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from aiohttp import web

from tgdaemon.control.ids import path_id
from tgdaemon.errors import ApiError
from tgdaemon.gateway.base import parse_target
from tgdaemon.httpjson import json_response, read_body, read_query
from tgdaemon.runtime import RUNTIME
from tgdaemon.store.views import CSV_HEADER
from tgdaemon.timeutil import now
from tgdaemon.wire import ACTIONS, Quota, QuotaChange, QuotaList

Count = Annotated[int, msgspec.Meta(ge=1, le=10**9)]


class QuotaBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    target: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    action: Annotated[str, msgspec.Meta(max_length=50)]
    last_n_posts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10
    quantity: Count | None = None
    orders: Count | None = None
    interval_seconds: Annotated[float, msgspec.Meta(ge=1, le=30 * 86400)] = 3600.0
    expires_in_seconds: Annotated[float, msgspec.Meta(gt=0, le=10 * 365 * 86400)]


class ExportQuery(msgspec.Struct, forbid_unknown_fields=True):
    format: Literal["json", "csv"] = "json"
    limit: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None  # only the latest N


async def add_quota(request: web.Request) -> web.Response:
    body = await read_body(request, QuotaBody)
    if body.action not in ACTIONS:
        raise ApiError(f"action {body.action!r} is not allowed: tgfleet only observes, with "
                       f"{' or '.join(ACTIONS)}", code="action_not_allowed")
    if (body.quantity is None) == (body.orders is None):
        raise ApiError("give exactly one of quantity and orders", code="invalid_body")
    if parse_target(body.target)[0] is None:
        raise ApiError(f"target {body.target!r}: not a public link, @username or invite link", code="invalid_target")
    rt = request.config_dict[RUNTIME]
    new_id = await rt.store.add_quota(
        name=body.name.strip(), target=body.target.strip(), action=body.action, last_n_posts=body.last_n_posts,
        quantity=body.quantity, orders=body.orders, interval_seconds=body.interval_seconds,
        expires_at=now() + body.expires_in_seconds)
    rt.inspector.wake.set()
    return json_response(msgspec.convert(await rt.store.quota(new_id), Quota), status=201)


async def list_quotas(request: web.Request) -> web.Response:
    return json_response(QuotaList(quotas=msgspec.convert(await request.config_dict[RUNTIME].store.quotas(),
                                                          list[Quota])))


async def set_paused(request: web.Request, paused: bool) -> web.Response:
    store = request.config_dict[RUNTIME].store
    qid = path_id(request)
    changed = await store.set_quota_paused(qid, paused)
    return json_response(QuotaChange(changed=changed, quota=msgspec.convert(await store.quota(qid), Quota)))


async def pause(request: web.Request) -> web.Response:
    return await set_paused(request, True)


async def resume(request: web.Request) -> web.Response:
    return await set_paused(request, False)


async def export(request: web.Request) -> web.StreamResponse:
    """Streamed as the store reads it, a page of rows (already the export's bytes) at a time, in a chunked
    response: an export of millions is never one body in memory, in the daemon or in the client."""
    query = read_query(request, ExportQuery)
    store = request.config_dict[RUNTIME].store
    quota_id = path_id(request)
    await store.quota(quota_id)  # a 404 before the answer starts
    csv_out = query.format == "csv"
    resp = web.StreamResponse(headers={"Content-Type": "text/csv; charset=utf-8" if csv_out
                                       else "application/json"})
    await resp.prepare(request)
    await resp.write(CSV_HEADER if csv_out else b'{"measurements":[')
    first = True
    async for chunk in store.measurement_export(quota_id, query.format, query.limit):
        await resp.write(chunk if csv_out or first else b"," + chunk)
        first = False
    if not csv_out:
        await resp.write(b"]}")
    await resp.write_eof()
    return resp


def add_routes(app: web.Application) -> None:
    app.router.add_post("/quotas", add_quota)
    app.router.add_get("/quotas", list_quotas)
    app.router.add_post("/quotas/{id}/pause", pause)
    app.router.add_post("/quotas/{id}/resume", resume)
    app.router.add_get("/quotas/{id}/measurements", export)
