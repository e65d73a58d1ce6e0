"""``GET /v1/watch``: the live stream over a WebSocket.

The client sends ``?since=EPOCH:SEQ`` when it reconnects; if the replay buffer
still holds everything after that point it gets only the missed deltas,
otherwise a fresh snapshot. A client that falls behind is told ``resync``
and sent a new snapshot on the same socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import WSMsgType, web

from tgdaemon.runtime import RUNTIME, Runtime
from tgdaemon.stream import Lagged, Subscription, batch_frame, encode

log = logging.getLogger(__name__)
SNAPSHOT_EVENTS = 200
SOCKETS = web.AppKey("watch_sockets", set)


async def _send_snapshot(ws: web.WebSocketResponse, rt: Runtime, sub: Subscription) -> None:
    accounts, _ = await rt.store.list_accounts(limit=10**9)
    events = await rt.store.recent_events(limit=SNAPSHOT_EVENTS)
    await ws.send_bytes(encode({
        "type": "snapshot", "epoch": rt.hub.epoch, "seq": sub.start_seq,
        "status": await rt.status(), "accounts": accounts, "quotas": await rt.store.quotas(), "events": events[::-1],
    }))


def _parse_since(raw: str | None) -> tuple[str, int] | None:
    if not raw:
        return None
    epoch, _, seq = raw.partition(":")
    return (epoch, int(seq)) if seq.isdigit() else None


async def _pump(ws: web.WebSocketResponse, rt: Runtime, since: tuple[str, int] | None) -> None:
    sub = rt.hub.subscribe()
    try:
        replay = rt.hub.replay_since(*since) if since else None
        if replay is None:
            await _send_snapshot(ws, rt, sub)
        elif replay:
            await ws.send_bytes(batch_frame(replay))
        while True:
            try:
                items = await sub.next_batch()
            except Lagged:
                sub.close()
                sub = rt.hub.subscribe()
                await ws.send_bytes(encode({"type": "resync", "reason": "fell behind the stream"}))
                await _send_snapshot(ws, rt, sub)
                continue
            await ws.send_bytes(batch_frame(items))
    except ConnectionError:
        pass  # the client went away
    except Exception:
        log.exception("watch stream failed")
    finally:
        sub.close()
        if not ws.closed:
            await ws.close(code=1011, message=b"stream ended")


async def watch(request: web.Request) -> web.WebSocketResponse:
    rt = request.config_dict[RUNTIME]
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=64 * 1024)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    pump = asyncio.create_task(_pump(ws, rt, _parse_since(request.query.get("since"))))
    try:
        async for msg in ws:  # the client says nothing; reading handles pings and close
            if msg.type == WSMsgType.ERROR:
                break
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await pump
        request.app[SOCKETS].discard(ws)
    return ws


async def close_all(app: web.Application) -> None:
    """On shutdown: tell every watcher the daemon is going away (1001)."""
    for ws in list(app[SOCKETS]):
        await ws.close(code=1001, message=b"daemon stopping")
