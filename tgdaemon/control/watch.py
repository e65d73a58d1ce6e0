"""``GET /v1/watch``: the live stream over a WebSocket.

The client sends ``?since=EPOCH:SEQ`` when it reconnects; if the replay buffer
still holds everything after that point it gets only the missed deltas,
otherwise a fresh snapshot. A client that falls behind is told ``resync``
and sent a new snapshot on the same socket. No frame is over
``stream.MAX_FRAME``: a big snapshot or replay goes as several frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from tgdaemon.errors import ApiError
from tgdaemon.runtime import RUNTIME, Runtime
from tgdaemon.stream import Lagged, Subscription, batch_frames, encode, snapshot_frames
from tgdaemon.wire import Account, Event, Quota, Resync

log = logging.getLogger(__name__)
SNAPSHOT_EVENTS = 200
SOCKETS = web.AppKey("watch_sockets", set)
# An epoch is the hub's hex token; a sequence number fits 18 ASCII digits ("²" and "٣" are digits to str.isdigit).
SINCE = re.compile(r"([0-9a-f]{1,32}):([0-9]{1,18})", re.ASCII)


async def _send_snapshot(ws: web.WebSocketResponse, rt: Runtime, sub: Subscription) -> None:
    """``wire.Snapshot`` and its ``wire.SnapshotPart`` frames (spliced by ``snapshot_frames``, to bound their size)."""
    accounts, _ = await rt.store.list_accounts(limit=10**9)
    events = await rt.store.recent_events(limit=SNAPSHOT_EVENTS)
    head = {"epoch": rt.hub.epoch, "seq": sub.start_seq, "status": await rt.status()}
    lists: dict[str, list[Any]] = {"accounts": msgspec.convert(accounts, list[Account]),
                                   "quotas": msgspec.convert(await rt.store.quotas(), list[Quota]),
                                   "events": msgspec.convert(events[::-1], list[Event])}
    for frame in snapshot_frames(head, lists):
        await ws.send_bytes(frame)


async def _send_deltas(ws: web.WebSocketResponse, items: list[bytes]) -> None:
    for frame in batch_frames(items):
        await ws.send_bytes(frame)


def parse_since(raw: str | None) -> tuple[str, int] | None:
    """``EPOCH:SEQ`` as the stream gave it, or None for a fresh snapshot; anything else is the client's mistake."""
    if not raw:
        return None
    found = SINCE.fullmatch(raw)
    if found is None:
        raise ApiError("query parameter since: expected EPOCH:SEQ as the stream gave it (a hex epoch, a colon,"
                       " a decimal sequence number)", code="invalid_query")
    return found.group(1), int(found.group(2))


async def _pump(ws: web.WebSocketResponse, rt: Runtime, since: tuple[str, int] | None) -> None:
    sub = rt.hub.subscribe()
    try:
        replay = rt.hub.replay_since(*since) if since else None
        if replay is None:
            await _send_snapshot(ws, rt, sub)
        else:
            await _send_deltas(ws, replay)
        while True:
            try:
                items = await sub.next_batch()
            except Lagged:
                sub.close()
                sub = rt.hub.subscribe()
                await ws.send_bytes(encode(Resync(reason="fell behind the stream")))
                await _send_snapshot(ws, rt, sub)
                continue
            await _send_deltas(ws, items)
    except ConnectionError:
        pass  # the client went away
    except Exception:
        log.exception("watch stream failed")
    finally:
        sub.close()
        if not ws.closed:
            await ws.close(code=1011, message=b"stream ended")


async def watch(request: web.Request) -> web.WebSocketResponse:
    since = parse_since(request.query.get("since"))  # before the upgrade: a bad one is a 400 with a JSON body
    rt = request.config_dict[RUNTIME]
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=64 * 1024)
    sockets = request.app[SOCKETS]
    sockets.add(ws)
    try:
        await ws.prepare(request)
        pump = asyncio.create_task(_pump(ws, rt, since))
        try:
            async for msg in ws:  # the client says nothing; reading handles pings and close
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await pump
    finally:
        sockets.discard(ws)  # on every path: a failed prepare, a failed snapshot, a client gone
    return ws


async def close_all(app: web.Application) -> None:
    """On shutdown: tell every watcher the daemon is going away (1001)."""
    for ws in list(app[SOCKETS]):
        await ws.close(code=1001, message=b"daemon stopping")
