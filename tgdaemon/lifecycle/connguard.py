"""The provider port's guard: a cap on open connections, and none held without a request.

aiohttp alone keeps a connection that never sends a byte for an hour (its
keepalive_timeout) and accepts until the descriptors run out, and then the
control socket cannot accept either. Here each TCP connection is a thin
protocol around aiohttp's own RequestHandler that keeps one deadline: the
whole request, head and body, within ``daemon.http_header_timeout_seconds``
of its first byte (or of the connection opening), and at most
``daemon.http_idle_timeout_seconds`` of silence between keep-alive requests.

At the cap a new connection closes the oldest one that is not in the middle
of a request (a silent one before an idle keep-alive one), so a fresh
``/healthz`` gets in under a flood of silent connections; only when every
held connection is mid-request is the newcomer refused, with a 503.

With TLS (``lifecycle.tls``) the guard still sees the bare TCP connection first: it is admitted and
its deadline starts before the handshake, which ``loop.start_tls`` then does inside it, so a client
that connects and never says hello is closed at the header deadline like a silent one, and counts
toward the cap meanwhile. (aiohttp's own way, ``create_server(ssl=...)``, would hand the guard a
connection only once its handshake is done: the silent ones would be nobody's to close or count.)
A TLS newcomer refused at the cap is closed without the 503, which it could not read.

The control socket is another site of the same runner and is not guarded:
the cap (``limits.connection_cap``) keeps the descriptors it needs free.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import ssl
from collections import Counter
from collections.abc import Callable

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from yarl import URL

from tgdaemon.httpjson import MAX_BODY, Handler
from tgdaemon.lifecycle.limits import ACCEPT_BACKLOG, Tally
from tgdaemon.lifecycle.tls import ProviderTLS

log = logging.getLogger(__name__)
_BUSY = (b'{"error":{"code":"too_many_connections","message":"every connection the daemon holds is'
         b' mid-request; try again"}}')
REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
           b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY), _BUSY))


class State(enum.Enum):
    HEAD = "waiting for a complete request"
    BUSY = "handling a request"
    IDLE = "idle between requests"
    CLOSED = "closed"


class Guard:
    """The connections of one TCP site: who is open, who may be closed first, and the deadlines."""

    def __init__(self, cap: int, header_timeout: float, idle_timeout: float) -> None:
        self.cap = cap
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self._live = 0  # admitted and not closed
        # Until connection_lost, closed ones too: a request parsed just before its connection was
        # closed must not run (nobody would get the answer), so the middleware must find it.
        self._open: dict[RequestHandler, Connection] = {}
        # Not mid-request, oldest first (dicts keep insertion order): who makes room at the cap.
        self._heads: dict[Connection, None] = {}
        self._idle: dict[Connection, None] = {}
        self.tally = Tally(self._report)

    def protocol_factory(self, server: web.Server, tls: ProviderTLS | None) -> Callable[[], asyncio.Protocol]:
        return lambda: Connection(self, server, tls)

    def admit(self) -> bool:
        """Room for one more: below the cap, or by closing the oldest connection not in a request."""
        if self._live < self.cap:
            return True
        victim = next(iter(self._heads), None) or next(iter(self._idle), None)
        if victim is None:
            self.tally.add("refused")
            return False
        self.tally.add("evicted")
        victim.close()
        return True

    def opened(self) -> None:
        self._live += 1

    def serving(self, conn: Connection, handler: RequestHandler) -> None:
        self._open[handler] = conn

    def moved(self, conn: Connection, state: State) -> None:
        self._heads.pop(conn, None)
        self._idle.pop(conn, None)
        if state is State.HEAD:
            self._heads[conn] = None
        elif state is State.IDLE:
            self._idle[conn] = None

    def closed(self, conn: Connection) -> None:
        self.moved(conn, State.CLOSED)
        self._live -= 1

    def lost(self, handler: RequestHandler) -> None:
        self._open.pop(handler, None)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """A request is complete with its body: read it under the deadline, then the handler runs unhurried."""
        conn = self._open.get(request.protocol)
        if conn is None:  # the control socket
            return await handler(request)
        if conn.state is State.CLOSED:
            return web.Response(status=408)
        if request.can_read_body and (request.content_length or 0) <= MAX_BODY:
            try:
                await request.read()  # kept by aiohttp for the handler's own read
            except ConnectionError:  # closed at its deadline, or the client left: nobody reads an answer
                return web.Response(status=408)
        conn.move(State.BUSY)
        try:
            return await handler(request)
        finally:
            conn.move(State.IDLE)

    def _report(self, counts: Counter[str]) -> None:
        parts = []
        if counts["evicted"]:
            parts.append(f"closed {counts['evicted']} that were not in a request, to make room")
        if counts["refused"]:
            parts.append(f"refused {counts['refused']} (every held connection was mid-request)")
        if counts["timed_out"]:
            parts.append(f"closed {counts['timed_out']} that sent no complete request within "
                         f"{self.header_timeout:g} s")
        if counts["tls_failed"]:
            parts.append(f"{counts['tls_failed']} failed the TLS handshake (plain HTTP to the TLS port, or a"
                         f" client that does not trust the certificate)")
        if parts:
            log.warning("provider port (cap %d connections): %s", self.cap, "; ".join(parts))


class Connection(asyncio.Protocol):
    """One TCP connection: aiohttp's RequestHandler inside, the guard's deadline around it (and, with TLS,
    around the handshake too)."""

    def __init__(self, guard: Guard, server: web.Server, tls: ProviderTLS | None) -> None:
        self._guard = guard
        self._server = server
        self._tls = tls
        self._handler: RequestHandler | None = None
        self._transport: asyncio.Transport | None = None  # the TCP one, then the TLS one over it
        self._timer: asyncio.TimerHandle | None = None
        self._handshake: asyncio.Task[None] | None = None  # held: the loop keeps only a weak reference
        # Decrypted bytes that came with the handshake's last flight, before the handler exists (asyncio's
        # TLS layer reads on at once, while the handshake's task resumes only on the next turn).
        self._early: list[bytes] = []
        self.state = State.HEAD

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # a stream server's
        self._transport = transport
        if not self._guard.admit():
            self.state = State.CLOSED
            if self._tls is None:
                transport.write(REFUSED)
            transport.close()
            return
        self._guard.opened()
        self.move(State.HEAD)  # with TLS the deadline covers the handshake as well
        if self._tls is None:
            self._serve(transport)
            return
        transport.pause_reading()  # not a byte for this protocol: the TLS layer takes the connection first
        self._handshake = asyncio.get_running_loop().create_task(self._start_tls(transport, self._tls.context))

    async def _start_tls(self, tcp: asyncio.Transport, context: ssl.SSLContext) -> None:
        """The handshake, then aiohttp's handler on the TLS transport; a failure closes the connection."""
        if self.state is State.CLOSED:  # closed to make room before this task ever ran
            return
        try:
            transport = await asyncio.get_running_loop().start_tls(
                tcp, self, context, server_side=True,
                ssl_handshake_timeout=self._guard.header_timeout + 1)  # the guard's deadline comes first
        except ssl.SSLError:
            if self.state is not State.CLOSED:
                self._guard.tally.add("tls_failed")
            transport = None
        except OSError:  # reset, or closed by the client mid-handshake
            transport = None
        if transport is None or self.state is State.CLOSED:  # None: aborted (the guard) during the handshake
            self.close()
            return
        self._transport = transport
        self._serve(transport)

    def _serve(self, transport: asyncio.Transport) -> None:
        self._handler = self._server()
        self._guard.serving(self, self._handler)
        self._handler.connection_made(transport)
        for data in self._early:
            self._handler.data_received(data)
        self._early.clear()

    def move(self, state: State) -> None:
        """To HEAD, BUSY or IDLE, each with its deadline (BUSY has none); a closed connection stays closed."""
        if self.state is State.CLOSED:
            return
        self.state = state
        self._guard.moved(self, state)
        self._cancel_timer()
        timeout = {State.HEAD: self._guard.header_timeout, State.IDLE: self._guard.idle_timeout}.get(state)
        if timeout is not None:
            self._timer = asyncio.get_running_loop().call_later(timeout, self._expire)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self.state is State.HEAD:
            self._guard.tally.add("timed_out")
        self.close()

    def _shut(self) -> None:
        if self.state is not State.CLOSED:
            self.state = State.CLOSED
            self._cancel_timer()
            self._guard.closed(self)

    def close(self) -> None:
        """Close now; aiohttp's handler learns of it from connection_lost, as from a client hanging up.
        Aborted, not closed: a close would keep the descriptor until a client that never reads had
        taken the unsent bytes, while the cap already counts it as free."""
        if self.state is State.CLOSED:
            return
        self._shut()
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.state is State.IDLE:
            self.move(State.HEAD)  # the next request's first byte: its deadline starts now
        if self._handler is not None:
            self._handler.data_received(data)
        elif self.state is not State.CLOSED:
            self._early.append(data)

    def eof_received(self) -> None:
        if self._handler is not None:
            self._handler.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._shut()
        if self._handler is not None:
            self._guard.lost(self._handler)
            self._handler.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._handler is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._handler is not None:
            self._handler.resume_writing()


class GuardedTCPSite(web.BaseSite):
    """aiohttp's TCPSite, with the guard's protocol in front of each connection (and TLS inside it)."""

    __slots__ = ("_host", "_port", "guard", "tls")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, guard: Guard,
                 tls: ProviderTLS | None = None) -> None:
        super().__init__(runner, backlog=ACCEPT_BACKLOG)
        self._host = host
        self._port = port
        self.guard = guard
        self.tls = tls

    @property
    def name(self) -> str:
        return str(URL.build(scheme="http" if self.tls is None else "https", host=self._host, port=self._port))

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self.guard.protocol_factory(server, self.tls), self._host, self._port, backlog=self._backlog)

    async def stop(self) -> None:
        await super().stop()
        self.guard.tally.close()
