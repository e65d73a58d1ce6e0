"""The control API: HTTP over the daemon's Unix socket, for tgtui and the admin commands.

Only the daemon's own user may talk to it: the socket is mode 0600 and every
request's peer uid is checked with SO_PEERCRED as well, in case the socket's
directory or mode is loosened by hand.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Annotated

import msgspec
from aiohttp import web

from tgdaemon.control.backup import add_routes as add_backup_routes
from tgdaemon.control.devices import add_routes as add_device_routes
from tgdaemon.control.export import add_routes as add_export_routes
from tgdaemon.control.health import add_routes as add_health_routes
from tgdaemon.control.ids import MAX_ID, path_id
from tgdaemon.control.nodes import add_routes as add_node_routes
from tgdaemon.control.onboard import add_routes as add_onboarding_routes
from tgdaemon.control.providers import add_routes as add_provider_routes
from tgdaemon.control.proxies import add_routes as add_proxy_routes
from tgdaemon.control.quotas import add_routes as add_quota_routes
from tgdaemon.control.setup import add_routes as add_setup_routes
from tgdaemon.control.tasks import add_routes as add_task_routes
from tgdaemon.control.watch import SOCKETS, close_all, watch
from tgdaemon.errors import ApiError
from tgdaemon.httpjson import (
    Handler,
    error_response,
    json_response,
    read_body,
    read_query,
)
from tgdaemon.lifecycle.storewatch import refuse_control_while_down
from tgdaemon.runtime import RUNTIME
from tgdaemon.store import Store
from tgdaemon.wire import (
    Account,
    AccountChange,
    Event,
    EventList,
    HealthFilter,
    SortKey,
    State,
)

_encoder = msgspec.json.Encoder()


class AccountsQuery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    state: State | None = None
    health: HealthFilter | None = None
    q: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    sort: SortKey = "id"
    desc: bool = False
    limit: Annotated[int, msgspec.Meta(ge=1, le=20000)] = 100
    after: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class EventsQuery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    account_id: Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=5000)] = 100


class DisableBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


def peer_uid(request: web.Request) -> int | None:
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport else None
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


@web.middleware
async def same_uid_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The control API exists only on the Unix socket, and only for the daemon's own uid."""
    uid = peer_uid(request)
    if uid is None:
        raise web.HTTPNotFound()
    if uid != os.getuid():
        return error_response(403, "forbidden", f"peer uid {uid} is not the daemon's uid {os.getuid()}")
    return await handler(request)


async def status(request: web.Request) -> web.Response:
    return json_response(await request.config_dict[RUNTIME].status())


async def list_accounts(request: web.Request) -> web.Response:
    """An ``AccountPage`` whose accounts the database encoded (``Store.list_accounts_json``): the event loop
    only joins their bytes, so a page of 20,000 costs it milliseconds however busy the daemon is."""
    query = read_query(request, AccountsQuery)
    try:
        rows, nxt = await request.config_dict[RUNTIME].store.list_accounts_json(
            state=query.state, q=query.q, sort=query.sort, desc=query.desc, limit=query.limit, after=query.after,
            health=query.health)
    except ValueError as exc:
        return error_response(400, "invalid_query", str(exc))
    body = b"".join((b'{"accounts":[', b",".join(rows), b'],"next":', _encoder.encode(nxt), b"}"))
    return web.Response(body=body, content_type="application/json")


async def get_account(request: web.Request) -> web.Response:
    return json_response(msgspec.convert(await request.config_dict[RUNTIME].store.get_account(path_id(request)),
                                         Account))


async def _change(store: Store, changed: bool, account_id: int) -> web.Response:
    return json_response(AccountChange(changed=changed,
                                       account=msgspec.convert(await store.get_account(account_id), Account)))


async def disable_account(request: web.Request) -> web.Response:
    aid = path_id(request)
    body = await read_body(request, DisableBody)
    store = request.config_dict[RUNTIME].store
    reason = body.reason.strip()
    if not reason:
        raise ApiError("body reason: must not be blank", code="invalid_body")
    changed = await store.disable_account(aid, reason)
    if changed:
        await request.config_dict[RUNTIME].gateway.forget(aid)
    return await _change(store, changed, aid)


async def enable_account(request: web.Request) -> web.Response:
    aid = path_id(request)
    store = request.config_dict[RUNTIME].store
    return await _change(store, await store.enable_account(aid), aid)


async def list_events(request: web.Request) -> web.Response:
    query = read_query(request, EventsQuery)
    events = await request.config_dict[RUNTIME].store.recent_events(account_id=query.account_id, limit=query.limit)
    return json_response(EventList(events=msgspec.convert(events, list[Event])))


def create_app() -> web.Application:
    """The control API, mounted at ``/v1/`` of the daemon's one application."""
    app = web.Application(middlewares=[same_uid_only, refuse_control_while_down])  # status and watch answer anyway
    app[SOCKETS] = set()
    app.on_shutdown.append(close_all)
    app.router.add_get("/status", status)
    app.router.add_get("/accounts", list_accounts)
    app.router.add_get("/accounts/{id}", get_account)
    app.router.add_post("/accounts/{id}/disable", disable_account)
    app.router.add_post("/accounts/{id}/enable", enable_account)
    app.router.add_get("/events", list_events)
    app.router.add_get("/watch", watch)
    add_onboarding_routes(app)
    add_setup_routes(app)
    add_task_routes(app)
    add_quota_routes(app)
    add_provider_routes(app)
    add_backup_routes(app)
    add_node_routes(app)
    add_health_routes(app)
    add_device_routes(app)
    add_export_routes(app)
    add_proxy_routes(app)
    return app
