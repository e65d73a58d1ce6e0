"""Control routes for proxies: add, list, remove, check now; and giving accounts their own proxy.

A proxy's URL is parsed here (``tgdaemon.proxies.url``) and its secret goes to the store's
``proxy_secrets`` only: no answer carries it, and no refusal quotes the URL it came in.

An account's proxy is sticky: the daemon never changes it by itself, and an operator's change takes effect
at the account's next connection, never under a live one. This node lets go of the account's connection
as soon as no call of it is in flight (``Gateway.retire``); another node that holds it connects through the
new proxy the next time it connects (its client is checked against the store before every connect).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from tgdaemon.control.ids import path_id
from tgdaemon.errors import ApiError
from tgdaemon.httpjson import json_response, read_body, read_query
from tgdaemon.proxies.url import LABEL_MAX, MAX_URL, ProxyURLError, label_problem, parse
from tgdaemon.runtime import RUNTIME
from tgdaemon.store import NewProxy
from tgdaemon.wire import Proxy, ProxyAdded, ProxyList, ProxyRemoved, ProxySet

Id = Annotated[int, msgspec.Meta(ge=1, le=2**62)]


class AddBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_URL)]
    label: Annotated[str, msgspec.Meta(max_length=LABEL_MAX)] = ""


class CheckBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    ids: Annotated[list[Id], msgspec.Meta(max_length=10_000)] | None = None  # None or empty: every proxy


class RemoveQuery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    force: bool = False


class SetBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    ids: Annotated[list[Id], msgspec.Meta(min_length=1, max_length=200_000)]
    proxy: Id | None  # None: no proxy of their own


async def add_proxy(request: web.Request) -> web.Response:
    body = await read_body(request, AddBody)  # msgspec names a refused field, never quotes its value
    try:
        parsed = parse(body.url)
    except ProxyURLError as exc:
        raise ApiError(str(exc), code="invalid_proxy") from None
    label = body.label.strip()
    if problem := label_problem(label):
        raise ApiError(problem, code="invalid_body")
    proxy = await request.config_dict[RUNTIME].store.add_proxy(
        NewProxy(parsed.scheme, parsed.host, parsed.port, parsed.username, parsed.secret, label))
    return json_response(ProxyAdded(proxy=msgspec.convert(proxy, Proxy)), status=201)


async def list_proxies(request: web.Request) -> web.Response:
    proxies = await request.config_dict[RUNTIME].store.list_proxies()
    return json_response(ProxyList(proxies=msgspec.convert(proxies, list[Proxy])))


async def remove_proxy(request: web.Request) -> web.Response:
    """409 while accounts use it, unless ``?force=true``: then they are left with no proxy of their own (their
    next connection goes out directly, or through the global [telegram.proxy]), each told in its trail."""
    proxy_id = path_id(request)
    query = read_query(request, RemoveQuery)
    rt = request.config_dict[RUNTIME]
    removed, accounts = await rt.store.remove_proxy(proxy_id, force=query.force)
    for account_id in accounts:
        await rt.gateway.retire(account_id)
    return json_response(ProxyRemoved(proxy=msgspec.convert(removed, Proxy), accounts=accounts))


async def check_proxies(request: web.Request) -> web.Response:
    """Check now (these, or every proxy) and answer with what was found, as the list shows it."""
    body = await read_body(request, CheckBody)
    rt = request.config_dict[RUNTIME]
    ids = sorted(set(body.ids)) if body.ids else None
    checked = {c.proxy_id for c in await rt.proxies.check(ids)}
    proxies = [p for p in await rt.store.list_proxies() if p["id"] in checked]
    return json_response(ProxyList(proxies=msgspec.convert(proxies, list[Proxy])))


async def set_account_proxy(request: web.Request) -> web.Response:
    body = await read_body(request, SetBody)
    rt = request.config_dict[RUNTIME]
    changed = await rt.store.set_account_proxy(body.ids, body.proxy)
    for account_id in changed:
        await rt.gateway.retire(account_id)
    proxy = None if body.proxy is None else msgspec.convert(await rt.store.get_proxy(body.proxy), Proxy)
    return json_response(ProxySet(changed=changed, proxy=proxy))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/proxies", list_proxies)
    app.router.add_post("/proxies", add_proxy)
    app.router.add_post("/proxies/check", check_proxies)
    app.router.add_delete("/proxies/{id}", remove_proxy)
    app.router.add_post("/accounts/proxy", set_account_proxy)
