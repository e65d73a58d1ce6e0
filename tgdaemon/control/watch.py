"""``GET /v1/watch``: the live stream over a WebSocket.

A new client gets a snapshot whose ``seq`` is the last event-log id it
reflects, then the deltas of every log row after it. A client that
reconnects sends ``?since=EPOCH:SEQ`` (the epoch names the database, SEQ is
the last ``seq`` it applied) and gets ``{"type": "resumed", "epoch", "seq",
"status"}`` and then just the rows after SEQ, read again from the log, across
daemon restarts too; unless the cursor is from another
database, lies below what retention pruned, or is more than
``daemon.stream_replay_size`` rows behind: then a snapshot. A client that
falls behind is told ``resync`` and sent a new snapshot on the same socket.
No frame is over ``stream.MAX_FRAME``: a snapshot is read and sent a page
at a time (a client shows the rows as they come), a big replay goes as
several frames. While the database is out of reach a new client is sent a
``store`` frame that says so, and its snapshot (or replay) once it is back; a
client whose start the loss cut short is told so too, and the socket closes
with 1013 (try again later): it reconnects from its cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from tgdaemon.errors import ApiError, StoreDisconnected
from tgdaemon.runtime import RUNTIME, Runtime
from tgdaemon.stream import (
    Lagged,
    Subscription,
    batch_frames,
    encode,
    snapshot_frames,
)
from tgdaemon.wire import Resync, StoreChanged

log = logging.getLogger(__name__)
SNAPSHOT_EVENTS = 200
SNAPSHOT_PAGE = 2000  # accounts or quotas per read, and so per frame: 2,000 accounts are about 700 KB
SNAPSHOT_LISTS = ("accounts", "quotas", "events")  # every snapshot frame carries each, in this order
SOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("watch_sockets", set)
# An epoch is the database's hex token; an event id fits 18 ASCII digits ("²" and "٣" are digits to str.isdigit).
SINCE = re.compile(r"([0-9a-f]{1,32}):([0-9]{1,18})", re.ASCII)


async def _send_snapshot(ws: web.WebSocketResponse, rt: Runtime, sub: Subscription) -> None:
    """Sent as it is read, a page at a time: each page's frames go out while the page after it is read (the last
    frame says ``"more": false``, and which is last is known only then), so reading overlaps the client's reading.
    Every page is read after subscribing, so it reflects at least every row up to ``sub.start_seq``; a change
    after that comes as a delta once the snapshot is sent, even when a later page already showed it: applying a
    delta twice, or a newer state early, is harmless, so the client converges."""
    head: dict[str, Any] | None = {"epoch": rt.hub.epoch, "seq": sub.start_seq, "status": await rt.status()}
    held: dict[str, list[Any]] = {}
    sending: asyncio.Task[None] | None = None
    try:
        async for piece in _snapshot_pages(rt, sub.start_seq):
            if held:
                if sending is not None:
                    await sending  # in order, and at most one page on its way: memory stays flat
                sending = asyncio.create_task(_send_frames(ws, _frames(head, held, more=True)))
                head = None
            held = piece
        if sending is not None:
            await sending
        await _send_frames(ws, _frames(head, held, more=False))
    finally:
        if sending is not None and not sending.done():
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await sending


async def _snapshot_pages(rt: Runtime, start_seq: int) -> AsyncIterator[dict[str, list[Any]]]:
    """The snapshot's lists as non-empty pieces: the recent events, then the quotas and the accounts by id in
    keyset pages of ``SNAPSHOT_PAGE``, so that no read and no frame grows with the fleet. The store's views go
    out as they are, as a delta's do; the accounts' as the JSON the database made of them."""
    events = [e for e in await rt.store.recent_events(limit=SNAPSHOT_EVENTS) if e["id"] <= start_seq]
    if events:
        yield {"events": events[::-1]}
    after = 0
    while True:
        quotas = await rt.store.quotas_after(after, SNAPSHOT_PAGE)
        if quotas:
            yield {"quotas": quotas}
        if len(quotas) < SNAPSHOT_PAGE:
            break
        after = quotas[-1]["id"]
    cursor: str | None = None
    while True:  # the listing's own pages by id: the same JSON a listing and a delta carry
        accounts, cursor = await rt.store.list_accounts_json(sort="id", limit=SNAPSHOT_PAGE, after=cursor)
        if accounts:
            yield {"accounts": [msgspec.Raw(text) for text in accounts]}
        if cursor is None:
            return


def _frames(head: dict[str, Any] | None, piece: dict[str, list[Any]], *, more: bool) -> list[bytes]:
    return snapshot_frames(head, {name: piece.get(name, []) for name in SNAPSHOT_LISTS}, more=more)


async def _send_frames(ws: web.WebSocketResponse, frames: list[bytes]) -> None:
    for frame in frames:
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
    if rt.storewatch.down is not None:
        await ws.send_bytes(encode(StoreChanged(store=rt.storewatch.status())))
        await rt.storewatch.up.wait()
    sub = rt.hub.subscribe()
    closing = (1011, b"stream ended")
    try:
        if since is not None and await rt.hub.resumable(*since):
            sub.floor = max(sub.floor, since[1])
            # Said at once, even when nothing was missed: the client knows the stream is live and no
            # snapshot is coming.
            await ws.send_bytes(encode({"type": "resumed", "epoch": rt.hub.epoch, "seq": since[1],
                                        "status": await rt.status()}))
            async for positions in rt.hub.replay(since[1], sub.start_seq):
                await _send_frames(ws, batch_frames(positions))
        else:
            await _send_snapshot(ws, rt, sub)
        while True:
            try:
                positions = await sub.next_batch()
            except Lagged:
                sub.close()
                sub = rt.hub.subscribe()
                await ws.send_bytes(encode(Resync(reason="fell behind the stream")))
                await _send_snapshot(ws, rt, sub)
                continue
            await _send_frames(ws, batch_frames(positions))
    except ConnectionError:
        pass  # the client went away
    except StoreDisconnected:
        closing = (1013, b"the database cannot be reached")
        with contextlib.suppress(ConnectionError):
            await ws.send_bytes(encode(StoreChanged(store=rt.storewatch.status())))
    except Exception:
        log.exception("watch stream failed")
    finally:
        sub.close()
        if not ws.closed:
            await ws.close(code=closing[0], message=closing[1])


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
    sockets = app[SOCKETS]
    for ws in list(sockets):
        await ws.close(code=1001, message=b"daemon stopping")
