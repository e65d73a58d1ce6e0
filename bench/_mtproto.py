"""A local MTProto server, and a fleet of the gateway's real Telegram clients connected to it over TCP.

For bench/ceiling.py: what one connected ``TelegramClient`` costs the daemon in memory, file
descriptors and CPU. Both halves run as processes of their own (``python -m bench._mtproto serve``
and ``python -m bench._mtproto clients``), so the server's memory and CPU are never the clients'.

**The server** listens on 127.0.0.1 and speaks what Telethon's own network layer (its
``MTProtoSender`` with ``ConnectionTcpFull``, the default) sends once a session has an auth key:
the TCP "full" framing (length, sequence number, CRC32), MTProto 2.0 encryption both ways
(AES-256-IGE with the keys derived from the auth key and msg_key, SHA-256 message keys), message
containers, gzip-packed requests, acknowledgements, pings. It answers ``InitConnection`` +
``help.getConfig``, ``users.getUsers`` (the account itself), ``updates.getState`` and
``updates.getDifference`` (what ``TelegramClient.connect()`` asks), ``ping`` and
``ping_delay_disconnect``; anything else gets an RPC error. The TL objects are tests/tgscript.py's.
It does **not** run the Diffie-Hellman key exchange: every session comes with its auth key, as the
daemon's do (a key is made once, at login, never at connect). Auth key ``i`` is
``shake_256(f"tgfleet bench {i}")``: the server derives the same keys as the clients' sessions.

**The clients** are made by the daemon's own code: a SQLite store of accounts whose sessions point
at the server (``Store.add_account`` with a ``SessionData``), ``TelethonGateway`` with its
``ClientPool``, and calls through ``gateway.get_me`` (``pool.use``: the session loaded from the
store, ``TelegramClient`` built by ``gateway.new_client``, connected, ``users.getUsers`` sent).
The answer is one JSON line on stdout. Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import json
import os
import resource
import signal
import struct
import sys
import time
from pathlib import Path
from typing import Any
from zlib import crc32

ROOT = Path(__file__).resolve().parent.parent
API_ID = 12345
API_HASH = "0123456789abcdef0123456789abcdef"
RPC_RESULT = 0xF35C6D01


def auth_key(i: int) -> bytes:
    """Session ``i``'s auth key: the server and the clients derive the same one."""
    return hashlib.shake_256(f"tgfleet bench {i}".encode()).digest(256)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# ---- the server -------------------------------------------------------------------------------------------------

class Connection:
    """One client's TCP connection: its auth key (from its first packet), session and counters."""

    def __init__(self, keys: dict[int, bytes], writer: asyncio.StreamWriter) -> None:
        self.keys = keys
        self.writer = writer
        self.key: bytes | None = None
        self.key_id = b""
        self.session_id = 0
        self.salt = 0
        self.sent_packets = 0  # the TCP "full" transport's sequence number
        self.last_msg_id = 0
        self.seq = 0

    def decrypt(self, payload: bytes) -> tuple[int, Any]:
        from telethon.crypto import AES
        from telethon.extensions import BinaryReader
        from telethon.network.mtprotostate import MTProtoState

        key_id = struct.unpack("<Q", payload[:8])[0]
        if self.key is None:
            if key_id not in self.keys:
                raise ConnectionError(f"unknown auth key {key_id:#x}")
            self.key, self.key_id = self.keys[key_id], payload[:8]
        msg_key = payload[8:24]
        aes_key, aes_iv = MTProtoState._calc_key(self.key, msg_key, True)  # client to server: x = 0
        plain = AES.decrypt_ige(payload[24:], aes_key, aes_iv)
        if hashlib.sha256(self.key[88:120] + plain).digest()[8:24] != msg_key:
            raise ConnectionError("msg_key does not match")
        salt, session_id, msg_id, _seq_no, length = struct.unpack("<qqqii", plain[:32])
        self.salt, self.session_id = salt, session_id
        return msg_id, BinaryReader(plain[32:32 + length]).tgread_object()

    def encrypt(self, body: bytes, content_related: bool) -> bytes:
        from telethon.crypto import AES
        from telethon.network.mtprotostate import MTProtoState

        assert self.key is not None
        now = time.time()
        msg_id = (int(now) << 32) | (int((now % 1) * 1e9) << 2) | 1  # a server's answer: msg_id = 1 mod 4
        if msg_id <= self.last_msg_id:
            msg_id = self.last_msg_id + 4
        self.last_msg_id = msg_id
        seq_no = self.seq * 2 + 1 if content_related else self.seq * 2
        self.seq += content_related
        data = struct.pack("<qqqii", self.salt, self.session_id, msg_id, seq_no, len(body)) + body
        data += os.urandom(-(len(data) + 12) % 16 + 12)
        msg_key = hashlib.sha256(self.key[96:128] + data).digest()[8:24]  # server to client: x = 8
        aes_key, aes_iv = MTProtoState._calc_key(self.key, msg_key, False)
        return self.key_id + msg_key + AES.encrypt_ige(data, aes_key, aes_iv)

    def send(self, body: bytes, content_related: bool = True) -> None:
        data = self.encrypt(body, content_related)
        packet = struct.pack("<ii", len(data) + 12, self.sent_packets) + data
        self.sent_packets += 1
        self.writer.write(packet + struct.pack("<I", crc32(packet)))


def messages(msg_id: int, obj: Any) -> list[tuple[int, Any]]:
    """The requests in one client message: a container's and gzip-packed ones unpacked."""
    from telethon.extensions import BinaryReader
    from telethon.tl.core import GzipPacked, MessageContainer

    if isinstance(obj, MessageContainer):
        return [m for inner in obj.messages for m in messages(inner.msg_id, inner.obj)]
    if isinstance(obj, GzipPacked):
        return messages(msg_id, BinaryReader(obj.data).tgread_object())
    return [(msg_id, obj)]


class Answers:
    """What the server says to each request; counted by kind for the clients' report."""

    def __init__(self) -> None:
        import tgscript

        self.ts = tgscript
        self.config = bytes(tgscript.tl_config())
        self.counts: dict[str, int] = {}

    def answer(self, conn: Connection, msg_id: int, request: Any) -> None:
        from telethon.tl import functions, types

        inner = request
        while isinstance(inner, (functions.InvokeWithLayerRequest, functions.InvokeWithoutUpdatesRequest,
                                 functions.InitConnectionRequest)):
            inner = inner.query
        name = type(inner).__name__
        self.counts[name] = self.counts.get(name, 0) + 1
        if isinstance(inner, types.MsgsAck):
            return
        if isinstance(inner, (functions.PingRequest, functions.PingDelayDisconnectRequest)):
            conn.send(bytes(types.Pong(msg_id=msg_id, ping_id=inner.ping_id)))
            return
        result: bytes
        if isinstance(inner, functions.help.GetConfigRequest):
            result = self.config
        elif isinstance(inner, functions.users.GetUsersRequest):
            account = int.from_bytes(conn.key_id, "little") % 1_000_000
            result = self.ts.serialize([self.ts.user(id=1_000_000 + account, phone=f"1555{account:07d}")])
        elif isinstance(inner, functions.updates.GetStateRequest):
            result = bytes(types.updates.State(pts=1, qts=0, date=self.ts._now(), seq=1, unread_count=0))
        elif isinstance(inner, functions.updates.GetDifferenceRequest):
            result = bytes(types.updates.DifferenceEmpty(date=self.ts._now(), seq=1))
        else:
            result = bytes(types.RpcError(error_code=400, error_message="METHOD_NOT_SUPPORTED_HERE"))
        conn.send(struct.pack("<Iq", RPC_RESULT, msg_id) + result)


async def serve(keys: int) -> None:
    """Until stdin closes or SIGTERM; prints ``port N`` once listening, and the request counts at the end."""
    from telethon.crypto import AuthKey

    table = {AuthKey(auth_key(i)).key_id: auth_key(i) for i in range(1, keys + 1)}
    answers = Answers()
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        conn = Connection(table, writer)
        try:
            while True:
                head = await reader.readexactly(8)
                length, _seq = struct.unpack("<ii", head)
                if not 12 <= length <= 2_000_000:
                    return
                rest = await reader.readexactly(length - 8)
                if crc32(head + rest[:-4]) != struct.unpack("<I", rest[-4:])[0]:
                    return
                msg_id, obj = conn.decrypt(rest[:-4])
                for mid, request in messages(msg_id, obj):
                    answers.answer(conn, mid, request)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            writer.close()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not os.read(sys.stdin.fileno(), 1) else None)
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()
    server.close()
    print(json.dumps({"connections": connections, "requests": answers.counts}), flush=True)


# ---- the clients ------------------------------------------------------------------------------------------------

def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def snapshot() -> dict[str, float]:
    gc.collect()
    return {"rss_kib": rss_kib(), "fds": fd_count(), "cpu_s": cpu_s(), "at": time.monotonic()}


async def clients(port: int, sizes: list[int], kept: int, idle_s: float, calls: int, work: Path,
                  deadline_s: float) -> dict[str, Any]:
    """The figures, step by step: unconnected clients, then connected ones at each size, idle, then calls."""
    from tgdaemon.config import TelegramConfig
    from tgdaemon.gateway.base import AccountRef
    from tgdaemon.gateway.telegram import TelethonGateway
    from tgdaemon.store import NewAccount, SessionData
    from tgdaemon.store.connect import open_url, parse_url

    deadline = time.monotonic() + deadline_s
    top = max(sizes)
    store = await open_url(parse_url(f"sqlite://{work / 'clients.sqlite3'}"), synchronous="normal")
    out: dict[str, Any] = {"steps": []}
    try:
        ids: list[int] = []
        for i in range(1, top + kept + 1):
            ids.append(await store.add_account(
                NewAccount(phone=f"+1555{i:07d}", tg_user_id=1_000_000 + i, label=f"c{i}", is_probe=False),
                SessionData(dc_id=2, server="127.0.0.1", port=port, auth_key=auth_key(i)), how="import"))
        cfg = TelegramConfig(api_id=API_ID, api_hash=API_HASH, max_connected=top + kept + 10,
                             idle_disconnect_seconds=3600.0, connect_timeout_seconds=60.0,
                             call_timeout_seconds=60.0, request_retries=0)
        gw = TelethonGateway(cfg)
        await gw.start(store)
        connected, objects = ids[:top], ids[top:]
        # Warm-up: one client connected and let go, so that imports, caches and the first TL classes are
        # paid for before the first figure.
        await gw.get_me(AccountRef(objects[-1]))
        await gw.forget(objects[-1])
        base = snapshot()
        out["base"] = base

        # What the pool keeps for an account it connected once and let go of (idle, least recently used):
        # its TelegramClient and session, never dropped while the daemon runs.
        held = [await gw._client_for(aid) for aid in objects[:-1]]  # a measurement: the pool's own factory
        after = snapshot()
        out["objects"] = {"clients": len(held), **{k: after[k] - base[k] for k in ("rss_kib", "fds", "cpu_s")}}

        start = snapshot()
        out["start"] = start
        done = 0
        for size in sorted(sizes):
            step_cpu = cpu_s()
            step_at = time.monotonic()
            batch = connected[done:size]
            for i in range(0, len(batch), 50):  # 50 connects at a time, as a busy scheduler would start them
                if time.monotonic() > deadline:
                    raise RuntimeError(f"connecting {size} clients: over the {deadline_s:.0f} s limit")
                await asyncio.gather(*(gw.get_me(AccountRef(aid)) for aid in batch[i:i + 50]))
            step_wall = time.monotonic() - step_at
            step_cpu = cpu_s() - step_cpu
            done = size
            now = snapshot()
            out["steps"].append({"connected": gw.pool.connected(), "rss_kib": now["rss_kib"] - start["rss_kib"],
                                 "fds": now["fds"] - start["fds"], "connect_cpu_s": step_cpu,
                                 "connect_wall_s": step_wall, "new": len(batch)})
        if gw.pool.connected() != top:
            raise RuntimeError(f"{gw.pool.connected()} clients connected, not {top}")
        # What the pool does before each connect, with every client connected and room to spare (so it disconnects
        # none): it looks through every client it holds. A measurement of the pool's own pass, nothing changed.
        passes = []
        gc.disable()  # the pass alone, not a collection that happens to fall in it
        try:
            for _ in range(21):  # CPU time of this thread: the machine's other work does not count
                t0 = time.thread_time()
                await gw.pool._make_room()
                passes.append((time.thread_time() - t0) * 1000)
        finally:
            gc.enable()
        out["make_room_ms"] = sorted(passes)[len(passes) // 2]  # the median

        idle0 = snapshot()
        await asyncio.sleep(min(idle_s, max(0.0, deadline - time.monotonic() - 60)))
        idle1 = snapshot()
        out["idle"] = {"seconds": idle1["at"] - idle0["at"], "cpu_s": idle1["cpu_s"] - idle0["cpu_s"],
                       "rss_kib": idle1["rss_kib"] - idle0["rss_kib"], "connected": gw.pool.connected()}

        made = 0
        c0, t0 = cpu_s(), time.monotonic()
        while made < calls and time.monotonic() < deadline:
            wave = [connected[(made + j) % top] for j in range(min(100, calls - made))]
            await asyncio.gather(*(gw.get_me(AccountRef(aid)) for aid in wave))
            made += len(wave)
        out["calls"] = {"calls": made, "cpu_s": cpu_s() - c0, "wall_s": time.monotonic() - t0,
                        "connected": gw.pool.connected()}
        del held
        await gw.close()
    finally:
        await store.close()
    out["telethon"] = __import__("telethon").__version__
    from telethon.crypto import aes

    out["aes"] = "cryptg" if aes.cryptg else ("libssl" if aes.libssl.encrypt_ige else "pure Python")
    out["fd_limit"] = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench._mtproto")
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--keys", type=int, required=True)
    c = sub.add_parser("clients")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--sizes", required=True, help="comma-separated: connected clients at each step (those the"
                                                   " descriptor limit cannot hold are left out)")
    c.add_argument("--kept", type=int, default=1000, help="unconnected clients measured apart")
    c.add_argument("--idle", type=float, default=60.0)
    c.add_argument("--calls", type=int, default=2000)
    c.add_argument("--work", type=Path, required=True)
    c.add_argument("--deadline", type=float, default=300.0)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))  # tgscript's TL objects
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):  # as the daemon does at start: one socket per client, both sides
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.mode == "serve":
        asyncio.run(serve(args.keys))
        return
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    sizes = [n for n in (int(x) for x in args.sizes.split(",")) if n + 100 <= limit] or [min(100, limit // 2)]
    print(json.dumps(asyncio.run(clients(args.port, sizes, args.kept, args.idle, args.calls, args.work,
                                         args.deadline))), flush=True)


if __name__ == "__main__":
    main()
