"""Real proxy servers on 127.0.0.1 for the tests: SOCKS5 with a user name and password (RFC 1928, RFC 1929),
HTTP CONNECT with Basic proxy authentication, and a TCP server to be dialled through them.

Each runs on an event loop of its own in a thread of its own (``Servers``), so a test may block on a CLI
subprocess while a daemon connects through them. Each proxy records every connection it relayed
(``relayed``: the user it authenticated and where it connected to) and every one it refused
(``refused``), and can be stopped (its port closed and its relays cut, as a proxy going down) and started
again on the same port. Nothing here is faked: the bytes are relayed both ways until either side closes.

Example::

    with Servers() as servers:
        target = servers.add(TcpTarget())
        socks = servers.add(Socks5Server("alice", "pw"))
        ...  # dial 127.0.0.1:socks.port, CONNECT to 127.0.0.1:target.port
        assert socks.relayed == [Relayed("alice", "127.0.0.1", target.port)]
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")
HOST = "127.0.0.1"
STEP_SECONDS = 10.0  # every read of a client's and every connect to a destination: a stuck peer ends the relay


@dataclass(frozen=True)
class Relayed:
    user: str
    host: str
    port: int


class Server:
    """One listening socket on 127.0.0.1 (a port chosen by the OS, kept across a stop and a start)."""

    def __init__(self) -> None:
        self.port = 0
        self.accepted = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, HOST, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """The port closes and every connection through it is cut, as when a proxy goes down."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STEP_SECONDS)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.handle(reader, writer)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            pass  # the client went away or spoke nonsense: the connection ends
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.transport.abort()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class TcpTarget(Server):
    """Where connections are made to through a proxy (a check's target, an account's "data centre"): it
    answers nothing, reads until the other side closes, and counts what it accepted."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass


class Proxy(Server):
    def __init__(self, user: str, password: str) -> None:
        super().__init__()
        self.user = user
        self.password = password
        self.relayed: list[Relayed] = []
        self.refused: list[str] = []  # why, for each refused client
        self.gate: asyncio.Semaphore | None = None  # set: each client waits for a release before it is served
        self.waiting = 0  # clients held at the gate now
        self.most_waiting = 0

    async def _pass_gate(self) -> None:
        if self.gate is None:
            return
        self.waiting += 1
        self.most_waiting = max(self.most_waiting, self.waiting)
        try:
            await self.gate.acquire()
        finally:
            self.waiting -= 1

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, user: str, host: str,
                     port: int, ok: bytes, failed: bytes) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(host, port), STEP_SECONDS)
        except (OSError, TimeoutError):
            self.refused.append(f"cannot reach {host}:{port}")
            writer.write(failed)
            await writer.drain()
            return
        self._writers.add(up_writer)
        self.relayed.append(Relayed(user, host, port))
        writer.write(ok)
        await writer.drain()
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._writers.discard(up_writer)
            up_writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.write_eof()


class Socks5Server(Proxy):
    """SOCKS5 that offers only user name and password authentication (method 2), then CONNECT."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._pass_gate()
        version, count = await asyncio.wait_for(reader.readexactly(2), STEP_SECONDS)
        methods = await reader.readexactly(count)
        if version != 5 or 2 not in methods:
            self.refused.append("no user/password method offered")
            writer.write(b"\x05\xff")
            return
        writer.write(b"\x05\x02")
        _, ulen = await asyncio.wait_for(reader.readexactly(2), STEP_SECONDS)
        user = (await reader.readexactly(ulen)).decode()
        password = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
        if (user, password) != (self.user, self.password):
            self.refused.append(f"wrong credentials for {user!r}")
            writer.write(b"\x01\x01")
            return
        writer.write(b"\x01\x00")
        _, command, _, kind = await asyncio.wait_for(reader.readexactly(4), STEP_SECONDS)
        if kind == 1:
            host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
        elif kind == 3:
            host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
        elif kind == 4:
            host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
        else:
            raise ValueError(f"address type {kind}")
        (port,) = struct.unpack("!H", await reader.readexactly(2))
        if command != 1:
            writer.write(b"\x05\x07\x00\x01" + bytes(6))  # command not supported
            return
        await self._relay(reader, writer, user, host, port, ok=b"\x05\x00\x00\x01" + bytes(6),
                          failed=b"\x05\x05\x00\x01" + bytes(6))


class HttpConnectServer(Proxy):
    """HTTP CONNECT that requires ``Proxy-Authorization: Basic`` with its user and password."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._pass_gate()
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), STEP_SECONDS)).decode("latin-1")
        request, *lines = head.split("\r\n")
        method, target, _ = request.split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            return
        if headers.get("proxy-authorization") != expected:
            self.refused.append("wrong or no Proxy-Authorization")
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"t\"\r\n"
                         b"Content-Length: 0\r\n\r\n")
            return
        host, _, port = target.rpartition(":")
        await self._relay(reader, writer, self.user, host.strip("[]"), int(port),
                          ok=b"HTTP/1.1 200 Connection established\r\n\r\n",
                          failed=b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")


S = TypeVar("S", bound=Server)


class Servers:
    """The servers' own event loop, in a thread; ``add``, ``stop`` and ``start`` run on it and wait."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test proxies", daemon=True)
        self._started: list[Server] = []

    def __enter__(self) -> Servers:
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        for server in self._started:
            with contextlib.suppress(Exception):
                self.run(server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(STEP_SECONDS)
        self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(STEP_SECONDS * 2)

    def add(self, server: S) -> S:
        self.run(server.start())
        self._started.append(server)
        return server

    def stop(self, server: Server) -> None:
        self.run(server.stop())

    def start(self, server: Server) -> None:
        self.run(server.start())

    def gate(self, proxy: Proxy) -> None:
        """Hold every new client of ``proxy`` until ``release``."""
        async def make() -> None:
            proxy.gate = asyncio.Semaphore(0)

        self.run(make())

    def release(self, proxy: Proxy, n: int = 1) -> None:
        async def free() -> None:
            assert proxy.gate is not None
            for _ in range(n):
                proxy.gate.release()

        self.run(free())
