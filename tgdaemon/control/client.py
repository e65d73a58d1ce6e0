"""The client of the daemon's control API; the dashboard and the admin commands use only this.

``call`` decodes an answer into its ``tgdaemon.wire`` type; ``request`` and the
helpers after it give plain JSON, as scripts and tests look at the wire.

It lives with the API it speaks, in tgdaemon, so that the dashboard (tgtui)
depends on the daemon's package and never the other way round.
"""

from __future__ import annotations

import asyncio
import gc
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, TypeVar

import aiohttp
import msgspec

from tgdaemon import config
from tgdaemon.errors import ApiError, DaemonNotRunning, TgfleetError
from tgdaemon.wire import AccountPage

T = TypeVar("T")
START_HINT = "start it with `tgdaemon run` (or `systemctl start tgdaemon`), or pass --socket"


def find_socket(explicit: str | None = None, config_path: str | None = None) -> Path:
    """The daemon's socket: ``explicit`` (--socket), else TGFLEET_SOCKET, else the config's (which applies
    TGFLEET_SOCKET too); the admin commands and the dashboard look in the same places."""
    if explicit:
        return Path(explicit)
    if env := os.environ.get("TGFLEET_SOCKET"):
        return Path(env)
    return config.load(config_path).socket_path()


class ControlClient:
    def __init__(self, socket_path: Path | str, *, timeout: float = 30.0) -> None:
        self.socket_path = Path(socket_path)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "ControlClient":
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.UnixConnector(path=str(self.socket_path))
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _not_running(self) -> DaemonNotRunning:
        return DaemonNotRunning(f"tgdaemon is not running (nothing answers on {self.socket_path}); {START_HINT}")

    async def call(self, method: str, path: str, answer: type[T], *, params: dict[str, Any] | None = None,
                   body: dict[str, Any] | None = None, timeout: float | None = None) -> T:
        """The answer decoded straight into ``answer`` (a ``tgdaemon.wire`` type), as the admin commands and the
        dashboard read it; one that does not fit is one line naming the route and the field. ``timeout``: this
        request's own, in place of the client's (a bulk action on 50,000 rows)."""
        raw = await self._send(method, path, params, body, timeout)
        try:
            return msgspec.json.decode(raw, type=answer)
        except msgspec.ValidationError as exc:
            raise TgfleetError(f"{method} /v1{path}: the daemon's answer does not fit this client ({exc}); are"
                               " the daemon and this command of the same version?") from None

    async def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                      body: dict[str, Any] | None = None) -> Any:
        """The answer as plain JSON (dicts and lists), for scripts and tests that look at the wire itself."""
        raw = await self._send(method, path, params, body)
        return msgspec.json.decode(raw) if raw else None

    async def _send(self, method: str, path: str, params: dict[str, Any] | None, body: dict[str, Any] | None,
                    timeout: float | None = None) -> bytes:
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        try:
            async with self._http().request(method, f"http://tgdaemon/v1{path}", params=query, json=body,
                                             timeout=self._timeout if timeout is None else
                                             aiohttp.ClientTimeout(total=timeout)) as resp:
                raw = await resp.read()
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, FileNotFoundError):
            raise self._not_running() from None
        if resp.status >= 400:
            raise _refusal(resp.status, raw)
        return raw

    async def export_measurements(self, quota_id: int, fmt: str) -> str:
        """A quota's measurements as CSV or JSON text, as the daemon writes them."""
        buf = io.BytesIO()
        await self.export_measurements_to(quota_id, fmt, buf)
        return buf.getvalue().decode()

    async def export_measurements_to(self, quota_id: int, fmt: str, out: BinaryIO) -> None:
        """The export written to ``out`` as it arrives: millions of rows never sit in this process. Its
        length has no limit of time, only its silence: ``timeout`` seconds without a byte end it."""
        path = f"/quotas/{quota_id}/measurements"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._timeout.total, sock_read=self._timeout.total)
        try:
            async with self._http().get(f"http://tgdaemon/v1{path}", params={"format": fmt},
                                        timeout=timeout) as resp:
                if resp.status >= 400:
                    raise _refusal(resp.status, await resp.read())
                async for chunk in resp.content.iter_any():
                    out.write(chunk)
        except (aiohttp.ClientConnectorError, FileNotFoundError):
            raise self._not_running() from None
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            raise TgfleetError(f"GET /v1{path}: the daemon's answer broke off ({str(exc) or type(exc).__name__});"
                               " what was written is incomplete") from None
        except TimeoutError:
            raise TgfleetError(f"GET /v1{path}: nothing came from the daemon for {self._timeout.total:g} s;"
                               " what was written is incomplete") from None

    async def status(self) -> dict[str, Any]:
        return await self.request("GET", "/status")

    async def accounts(self, **params: Any) -> dict[str, Any]:
        return await self.request("GET", "/accounts", params=params)

    async def account_pages(self, *, page: int, limit: int | None = None, **params: Any,
                            ) -> AsyncIterator[AccountPage]:
        """A listing's pages in order, to ``limit`` accounts or the end, each decoded into ``AccountPage``;
        the next page is already asked for while the caller handles one, so the daemon's query of it runs
        beside the caller's work on this one."""
        async def fetch(after: str | None, got: int) -> AccountPage:
            n = page if limit is None else min(page, limit - got)
            return await self.call("GET", "/accounts", AccountPage, params={**params, "limit": n, "after": after})

        got = 0
        ahead: asyncio.Task[AccountPage] | None = asyncio.ensure_future(fetch(None, got))
        try:
            while ahead is not None:
                current = await ahead
                got += len(current.accounts)
                ahead = None
                if current.next and (limit is None or got < limit):
                    ahead = asyncio.ensure_future(fetch(current.next, got))
                    await asyncio.sleep(0)  # let it send its request before the caller's work begins
                yield current
        finally:
            if ahead is not None:
                ahead.cancel()
                await asyncio.gather(ahead, return_exceptions=True)

    async def all_accounts(self, *, page: int = 5000, **params: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        after = None
        while True:
            data = await self.accounts(limit=page, after=after, **params)
            out.extend(data["accounts"])
            if not (after := data["next"]):
                return out

    async def account(self, account_id: int) -> dict[str, Any]:
        return await self.request("GET", f"/accounts/{account_id}")

    async def disable(self, account_id: int, reason: str) -> dict[str, Any]:
        return await self.request("POST", f"/accounts/{account_id}/disable", body={"reason": reason})

    async def enable(self, account_id: int) -> dict[str, Any]:
        return await self.request("POST", f"/accounts/{account_id}/enable", body={})

    async def quotas(self) -> list[dict[str, Any]]:
        return (await self.request("GET", "/quotas"))["quotas"]

    async def measurements(self, quota_id: int, limit: int = 500) -> list[dict[str, Any]]:
        """The latest ``limit``: enough for a sparkline, however long the quota has run."""
        return (await self.request("GET", f"/quotas/{quota_id}/measurements",
                                   params={"limit": str(limit)}))["measurements"]

    async def nodes(self) -> dict[str, Any]:
        """``{"node": the one that answered, "at": the database's time, "nodes": [...]}``."""
        return await self.request("GET", "/nodes")

    async def proxies(self) -> list[dict[str, Any]]:
        """The accounts' own proxies, as ``GET /v1/proxies`` lists them (never a password or secret)."""
        return (await self.request("GET", "/proxies"))["proxies"]  # type: ignore[no-any-return]

    async def pulse(self, minutes: int = 60) -> dict[str, Any]:
        """Tasks done and failed per minute and queue over the last ``minutes``, oldest minute first:
        ``{"at", "minutes", "queues": {name: {"done": [...], "failed": [...]}}}``."""
        return await self.request("GET", "/pulse", params={"minutes": minutes})  # type: ignore[no-any-return]

    async def events(self, **params: Any) -> list[dict[str, Any]]:
        return (await self.request("GET", "/events", params=params))["events"]

    async def watch(self, since: str | None = None, *, parts: bool = False) -> AsyncIterator[dict[str, Any]]:
        """Messages of the live stream, one by one: batched deltas unpacked, a snapshot sent in parts assembled.

        The deltas of one log row too big for one frame come in frames marked ``more``: they are held
        back until the last one is in, so a connection lost halfway never leaves half a row applied.
        ``parts``: the snapshot's frames as they come (``snapshot``, then ``snapshot_part`` ones, until
        ``"more": false``), for a client that shows rows while the rest is on its way.
        A refused ``since`` raises ApiError (the daemon answers 400 before the upgrade).
        """
        params = {"since": since} if since else {}
        try:
            ws = await self._http().ws_connect("http://tgdaemon/v1/watch", params=params, heartbeat=30,
                                               timeout=aiohttp.ClientWSTimeout(ws_close=5))
        except aiohttp.WSServerHandshakeError as exc:
            raise ApiError(f"the daemon refused the stream: HTTP {exc.status} {exc.message}", status=exc.status,
                           code="watch_refused") from None
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, FileNotFoundError):
            raise self._not_running() from None
        async with ws:
            snapshot: dict[str, Any] | None = None  # a snapshot whose parts are still coming
            held: list[dict[str, Any]] = []  # deltas of a row whose last frame is still coming
            async for msg in ws:
                if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    break
                data = _decode_frame(msg.data)
                kind = data.get("type")
                if kind in ("delta", "deltas"):
                    held += data["items"] if kind == "deltas" else [data]
                    if not data.get("more"):
                        items, held = held, []
                        for item in items:
                            yield item
                elif kind in ("snapshot", "snapshot_part") and not parts:
                    if kind == "snapshot":
                        snapshot = data
                    elif snapshot is not None:
                        for key, value in data.items():
                            if isinstance(value, list):
                                snapshot.setdefault(key, []).extend(value)
                    if snapshot is not None and not data.get("more"):
                        snapshot.pop("more", None)
                        yield snapshot
                        snapshot = None
                else:
                    yield data
        raise self._not_running()


def _decode_frame(raw: bytes) -> dict[str, Any]:
    """A snapshot frame of 2,000 accounts makes tens of thousands of objects: with the cyclic collector off while
    they are made it decodes in a third of the time (decoded JSON holds no cycles: nothing for it to find)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        data: dict[str, Any] = msgspec.json.decode(raw)
    finally:
        if collecting:
            gc.enable()
    return data


def _refusal(status: int, raw: bytes) -> ApiError:
    """The daemon's ``{"error": {"code", "message"}}`` as an ApiError; a body without one still names the status."""
    try:
        data = msgspec.json.decode(raw) if raw else None
    except msgspec.DecodeError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    error = error if isinstance(error, dict) else {}
    return ApiError(error.get("message") or f"HTTP {status}", status=status, code=error.get("code", "error"))


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
