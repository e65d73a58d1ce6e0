"""Control routes for the fleet's nodes: the list, and pinning accounts to one of them.

Any node answers for the whole fleet: the list is the store's, and a pin is
a store write that the leader's balancer and the accounts' owners act on.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from tgdaemon.errors import NotFound
from tgdaemon.httpjson import json_response, read_body
from tgdaemon.runtime import RUNTIME
from tgdaemon.timeutil import iso
from tgdaemon.wire import NodeList, Pinned, node_of

Ids = Annotated[list[Annotated[int, msgspec.Meta(ge=1, le=2**62)]], msgspec.Meta(min_length=1, max_length=200_000)]


class PinBody(msgspec.Struct, forbid_unknown_fields=True):
    ids: Ids
    node: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class UnpinBody(msgspec.Struct, forbid_unknown_fields=True):
    ids: Ids


async def list_nodes(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    at = await rt.store.db_now()
    nodes = await rt.store.list_nodes(rt.cfg.nodes.dead_after_seconds)
    return json_response(NodeList(node=rt.node.name, at=iso(at), nodes=[node_of(n) for n in nodes]))


async def pin(request: web.Request) -> web.Response:
    """Only to a node the store knows (a typo would pin accounts to nothing); one that is not alive is allowed,
    as a pin is a promise: its accounts wait for it, and the answer says so."""
    body = await read_body(request, PinBody)
    rt = request.config_dict[RUNTIME]
    nodes = {n.name: n for n in await rt.store.list_nodes(rt.cfg.nodes.dead_after_seconds)}
    node = nodes.get(body.node)
    if node is None:
        raise NotFound(f"node {body.node!r}: no such node (the nodes are {', '.join(sorted(nodes)) or 'none'};"
                       " `tgdaemon nodes list` shows them)")
    changed = await rt.store.pin_accounts(sorted(set(body.ids)), body.node)
    note = None
    if not node.alive:
        why = "stopped" if node.stopped_at is not None else "dead (no heartbeat)"
        note = (f"node {body.node} is {why}: its pinned accounts are served by no node until it is back"
                " (unpin them to let the fleet take them)")
    return json_response(Pinned(changed=changed, node=body.node, note=note))


async def unpin(request: web.Request) -> web.Response:
    body = await read_body(request, UnpinBody)
    changed = await request.config_dict[RUNTIME].store.pin_accounts(sorted(set(body.ids)), None)
    return json_response(Pinned(changed=changed, node=None, note=None))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/nodes", list_nodes)
    app.router.add_post("/accounts/pin", pin)
    app.router.add_post("/accounts/unpin", unpin)
