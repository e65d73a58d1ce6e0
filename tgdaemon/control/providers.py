"""Control routes for providers: add (the one answer that carries the token), list, revoke; and the
assignment of accounts to a provider or to the daemon's own executor."""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from tgdaemon.errors import ApiError, NotFound
from tgdaemon.httpjson import json_response, read_body
from tgdaemon.provider.auth import hash_token, new_token
from tgdaemon.quotas.executor import NAME as LOCAL
from tgdaemon.runtime import RUNTIME
from tgdaemon.store import Store
from tgdaemon.store.views import provider_name_problem
from tgdaemon.wire import (
    Assigned,
    Provider,
    ProviderAdded,
    ProviderChange,
    ProviderList,
)


class AddBody(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(max_length=100)]


class AssignBody(msgspec.Struct, forbid_unknown_fields=True):
    ids: Annotated[list[Annotated[int, msgspec.Meta(ge=1, le=2**62)]], msgspec.Meta(min_length=1, max_length=200_000)]
    executor: Annotated[str, msgspec.Meta(max_length=100)]


def _name(name: str) -> str:
    if problem := provider_name_problem(name):
        raise ApiError(problem, code="invalid_name")
    return name


async def add_provider(request: web.Request) -> web.Response:
    """201 with the token: its only appearance anywhere; the store gets its hash."""
    name = _name((await read_body(request, AddBody)).name)
    token = new_token()
    provider = await request.config_dict[RUNTIME].store.add_provider(name, hash_token(token))
    return json_response(ProviderAdded(provider=msgspec.convert(provider, Provider), token=token), status=201)


async def list_providers(request: web.Request) -> web.Response:
    providers = await request.config_dict[RUNTIME].store.list_providers()
    return json_response(ProviderList(providers=msgspec.convert(providers, list[Provider])))


async def revoke_provider(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if provider_name_problem(name):
        raise NotFound(f"provider {name}: no such provider")
    changed, provider = await request.config_dict[RUNTIME].store.revoke_provider(name)
    return json_response(ProviderChange(changed=changed, provider=msgspec.convert(provider, Provider)))


async def check_executor(store: Store, executor: str) -> None:
    """Only ``local`` or a provider that exists and is not revoked: tasks for anyone else would never run."""
    if executor != LOCAL:
        known = {p["name"]: p for p in await store.list_providers()}
        if executor not in known:
            raise ApiError(f"executor {executor!r}: no such provider (add it with `tgdaemon providers add`,"
                           f" or use {LOCAL!r})", code="unknown_executor")
        if known[executor]["revoked_at"] is not None:
            raise ApiError(f"executor {executor!r}: the provider was revoked", code="unknown_executor")


async def assign_accounts(request: web.Request) -> web.Response:
    body = await read_body(request, AssignBody)
    store = request.config_dict[RUNTIME].store
    await check_executor(store, body.executor)
    changed = await store.assign_accounts(sorted(set(body.ids)), body.executor)
    return json_response(Assigned(changed=changed, executor=body.executor))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/accounts/assign", assign_accounts)
    app.router.add_post("/providers", add_provider)
    app.router.add_get("/providers", list_providers)
    app.router.add_post("/providers/{name}/revoke", revoke_provider)
