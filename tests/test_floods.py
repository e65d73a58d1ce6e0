"""Connection floods, slow clients, and the operator's stop and start (issue 10, items 1 and 11).

Real daemons throughout: subprocesses started with the descriptor limit
systemd gives a service by default (1,024), or in-process ones where a test
must hold the store's writer; real TCP on 127.0.0.1 and the real control
socket. Every wait is bounded; every loop is bounded in count.
"""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from daemon_proc import fleet

from tgdaemon import config
from tgdaemon.control.client import ControlClient
from tgdaemon.lifecycle import limits
from tgdaemon.lifecycle.limits import connection_cap

FLOOD = 1_500  # idle connections: more than a daemon with 1,024 descriptors can hold
BATCH = 250
WAIT = 10.0
PULL = "/api/provider/telegram/tasks/pull"
REPORT = "/api/provider/telegram/tasks/report"


def raise_own_limit(needed: int) -> None:
    """This process holds the client ends of the flood."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} file descriptors; this process may have only {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def http_address(status: dict[str, Any]) -> tuple[str, int]:
    host, _, port = status["http"].rpartition(":")
    return host, int(port)


def control_status(path: Path) -> dict[str, Any]:
    """``status`` through the control socket, as tgtui and the CLI ask it."""
    async def ask() -> dict[str, Any]:
        async with ControlClient(path, timeout=WAIT) as client:
            return await client.status()

    return asyncio.run(ask())


def healthz(address: tuple[str, int]) -> int:
    """GET /healthz on a fresh connection; the status code."""
    with socket.create_connection(address, timeout=WAIT) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: tgdaemon\r\nConnection: close\r\n\r\n")
        answer = b""
        for _ in range(100):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def closed_by_peer(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


def wait_for(condition: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.05) + 1):
        if condition() or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return condition()


def test_a_flood_of_silent_connections_never_cuts_the_operator_off() -> None:
    raise_own_limit(FLOOD + 1000)
    cap = connection_cap(config.Config(), 1024)
    with fleet() as f:
        daemon = f.start(accounts=20, nofile=(1024, 1024))
        daemon.wait_ready()
        address = http_address(control_status(f.socket_path))
        held: list[socket.socket] = []
        try:
            for _ in range(FLOOD // BATCH):
                held += [socket.create_connection(address, timeout=WAIT) for _ in range(BATCH)]
                assert healthz(address) == 200, daemon.log()[-3000:]
                assert control_status(f.socket_path)["pid"] == daemon.pid
            # the daemon holds no more than its cap: the oldest silent ones were closed to make room
            assert wait_for(lambda: sum(not closed_by_peer(s) for s in held) <= cap), daemon.log()[-3000:]
            log = daemon.log()
            assert "Traceback" not in log and "out of system resource" not in log, log[-3000:]
            assert len(log.splitlines()) < 36, log[-3000:]
            assert "that were not in a request, to make room" in log
            assert daemon.stop(signal.SIGTERM) == 0, daemon.log()[-3000:]  # with the flood still held
        finally:
            for sock in held:
                sock.close()


async def read_until_closed(reader: asyncio.StreamReader, timeout: float = WAIT) -> bytes:
    """Everything until the daemon closes the connection (a reset too); TimeoutError if it keeps it open."""
    try:
        return await asyncio.wait_for(reader.read(), timeout)
    except ConnectionError:  # closed while this side was still sending: the kernel answers with a reset
        return b""


async def trickle(writer: asyncio.StreamWriter, data: bytes, pause: float = 0.1) -> bool:
    """A byte at a time; True when the daemon cut the connection before all was sent."""
    try:
        for i in range(len(data)):
            writer.write(data[i:i + 1])
            await writer.drain()
            await asyncio.sleep(pause)
    except ConnectionError:
        return True
    return writer.transport.is_closing()


async def still_open(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), 0.3) != b""
    except asyncio.TimeoutError:
        return True


async def get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str = "/healthz") -> int:
    """One keep-alive GET on an open connection; the status code, the body read to its end."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: tgdaemon\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    await asyncio.wait_for(reader.readexactly(length), WAIT)
    return int(head.split(b" ", 2)[1])


async def test_silent_slow_and_idle_connections_are_closed(daemon_factory: Any) -> None:
    async with daemon_factory(daemon={"http_header_timeout_seconds": 1.0, "http_idle_timeout_seconds": 2.0}) as (
            daemon, _):
        host, _, port = daemon.runtime.http_bound.rpartition(":")
        silent_r, _silent_w = await asyncio.open_connection(host, int(port))
        loris_r, loris_w = await asyncio.open_connection(host, int(port))
        body_r, body_w = await asyncio.open_connection(host, int(port))
        kept_r, kept_w = await asyncio.open_connection(host, int(port))
        # slow-loris: a request head that never ends, one byte every 0.1 s (30 s in all)
        loris = asyncio.create_task(trickle(loris_w, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 300))
        # a complete head, then a body at a byte every 0.1 s
        body_w.write(b"POST " + PULL.encode() + b" HTTP/1.1\r\nHost: tgdaemon\r\nAuthorization: Bearer tgf_x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 300\r\n\r\n")
        slow_body = asyncio.create_task(trickle(body_w, b" " * 300))
        assert await get(kept_r, kept_w) == 200  # a keep-alive client, idle after its answer
        assert await read_until_closed(silent_r) == b""
        assert await read_until_closed(loris_r) == b"" and await loris
        assert await read_until_closed(body_r) == b"" and await slow_body
        assert await read_until_closed(kept_r) == b""
        fresh_r, fresh_w = await asyncio.open_connection(host, int(port))
        assert await get(fresh_r, fresh_w) == 200  # a prompt client is served as before
        fresh_w.close()


async def test_at_the_cap_silent_connections_make_room_and_busy_ones_are_kept(daemon_factory: Any) -> None:
    async with daemon_factory(daemon={"max_http_connections": 4, "http_header_timeout_seconds": 30.0}) as (
            daemon, client):
        host, _, port = daemon.runtime.http_bound.rpartition(":")
        token = (await client.request("POST", "/providers", body={"name": "acme"}))["token"]

        async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await asyncio.open_connection(host, int(port))

        oldest, second = await connect(), await connect()
        kept = await connect()
        assert await get(*kept) == 200  # idle now, but it has been served
        youngest = await connect()
        fresh = await connect()  # the fifth: the oldest silent one is closed for it
        assert await get(*fresh) == 200
        assert await read_until_closed(oldest[0]) == b""
        assert await still_open(second[0]) and await still_open(kept[0]) and await still_open(youngest[0])

        body = json.dumps({"limit": 1}).encode()
        pull = (f"POST {PULL} HTTP/1.1\r\nHost: tgdaemon\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
        async with daemon.runtime.store.tx():  # every pull now waits for the writer: four requests in progress
            pulls = []
            for _ in range(4):  # each one closes a silent or idle one, then sends its request
                pulls.append(await connect())
                pulls[-1][1].write(pull)
                await asyncio.sleep(0.2)  # the daemon reads it (loopback: well within this)
            refused_r, _refused_w = await connect()
            refused = await read_until_closed(refused_r)
            assert refused.startswith(b"HTTP/1.1 503 ") and b"too_many_connections" in refused, refused
        for reader, _ in pulls:  # none of the requests in progress was cut
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
            assert head.startswith(b"HTTP/1.1 200 "), head
        for _, writer in (second, kept, youngest, fresh, *pulls):
            writer.close()


ACCEPT_SERVER = textwrap.dedent("""
    import asyncio, logging, resource, sys
    from tgdaemon.lifecycle.limits import AcceptFailures
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(name)s: %(message)s")

    class Hold(asyncio.Protocol):
        pass

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(AcceptFailures(interval=1.0))
        server = await loop.create_server(Hold, "127.0.0.1", 0, backlog=128)
        print("port", server.sockets[0].getsockname()[1], flush=True)
        await asyncio.sleep(4.5)

    asyncio.run(main())
""")


def test_accept_failures_are_counted_in_a_line_now_and_then_never_a_traceback_each() -> None:
    """asyncio's accept loop, out of descriptors, reports many failures a second (a traceback each by default)."""
    raise_own_limit(1000)
    proc = subprocess.Popen([sys.executable, "-c", ACCEPT_SERVER], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True)
    held: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().split()[1])
        for _ in range(150):  # 64 descriptors: the accept loop runs out and keeps trying
            sock = socket.socket()
            sock.settimeout(1)
            try:
                sock.connect(("127.0.0.1", port))
            except OSError:
                sock.close()
                break
            held.append(sock)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
        for sock in held:
            sock.close()
    lines = [line for line in out.splitlines() if line.strip()]
    failures = [line for line in lines if "accept() failed" in line]
    assert "Traceback" not in out and len(lines) <= 8, out[-3000:]
    counted = sum(int(line.split("accept() failed ")[1].split()[0]) for line in failures)
    assert failures and counted > len(failures), out[-3000:]  # many failures, few lines
    assert "Too many open files" in failures[0] and "LimitNOFILE" in failures[0]


def test_the_start_line_names_the_limits_the_daemon_runs_with() -> None:
    with fleet() as f:
        f.config.write_text(textwrap.dedent("""
            [daemon]
            max_http_connections = 300
            http_header_timeout_seconds = 5
            http_idle_timeout_seconds = 30
            [store]
            synchronous = "normal"
            [retention]
            events_days = 7
            finished_tasks_days = 0
        """))
        daemon = f.start(accounts=10, nofile=(1024, 4096))  # a soft limit below the hard one is raised
        daemon.wait_ready()
        assert daemon.stop(signal.SIGTERM) == 0
        lines = [line for line in daemon.log().splitlines() if "limits:" in line]
        assert len(lines) == 1, daemon.log()
        line = lines[0]
        for expected in ("fds 4096 (hard 4096, raised from 1024)", "at most 300 connections",
                         "request within 5 s", "idle 30 s", "synchronous=normal", "events 7 d",
                         "finished tasks kept"):
            assert expected in line, line
        f.config.write_text("# defaults only\n")
        again = f.start(accounts=10, nofile=(1024, 1024))  # nothing to raise: the cap shrinks to fit
        again.wait_ready()
        assert again.stop(signal.SIGTERM) == 0
        line = next(line for line in again.log().splitlines() if "limits:" in line)
        cap = connection_cap(config.Config(), 1024)
        for expected in ("fds 1024 (hard 1024);", f"at most {cap} connections (max_http_connections 4096, lowered",
                         "request within 10 s", "idle 60 s", "synchronous=full", "events 30 d",
                         "finished tasks 14 d"):
            assert expected in line, line


def test_a_max_connected_the_descriptor_limit_cannot_hold_is_one_warning_at_start() -> None:
    """Each connected Telegram client holds a descriptor: the daemon says at start, once, when telegram.max_connected
    (here its default) cannot fit, and what to raise or set. (api_id and api_hash set make it a real fleet for the
    limits; --simulate still keeps the calls on the simulator.)"""
    real = '[telegram]\napi_id = 12345\napi_hash = "0123456789abcdef0123456789abcdef"\n'
    default = config.TelegramConfig().max_connected
    needed = limits.ACCEPT_BACKLOG + default + limits.OTHER_DESCRIPTORS + limits.MIN_CONNECTIONS
    assert needed > 1024  # the default needs more than a service's default limit: there is something to say
    with fleet() as f:
        f.config.write_text(real)
        daemon = f.start(accounts=10, nofile=(1024, 1024))
        daemon.wait_ready()
        assert daemon.stop(signal.SIGTERM) == 0
        lines = [line for line in daemon.log().splitlines() if "telegram.max_connected" in line]
        assert len(lines) == 1, daemon.log()
        assert f" WARNING tgdaemon.lifecycle.limits: telegram.max_connected {default} does not fit the" \
               " file-descriptor limit 1024 " in lines[0], lines[0]
        assert f"raise LimitNOFILE to at least {needed} or set telegram.max_connected to at most" \
               f" {1024 - needed + default}" in lines[0], lines[0]
        f.config.write_text(real + "max_connected = 500\n")  # fits: 128 + 500 + 64 + 16 <= 1024
        fits = f.start(accounts=10, nofile=(1024, 1024))
        fits.wait_ready()
        assert fits.stop(signal.SIGTERM) == 0
        assert "telegram.max_connected" not in fits.log(), fits.log()


E2E_CONFIG = """
[quotas]
generate_interval_seconds = 0.2
pace_seconds = 0
local_concurrency = 0
[limits]
flood_wait_jitter_seconds = 0
[simulator]
probe_fraction = 0.1
dead_fraction = 0.0
flood_wait_rate = 0.0
peer_flood_rate = 0.0
transient_rate = 0.0
"""


async def provider_loop(http: aiohttp.ClientSession, base: str, token: str, applied: list[int],
                        stop: asyncio.Event) -> None:
    """Pull and report until the daemon goes away; ``applied`` gets every report it acknowledged."""
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 60
    for _ in range(10_000):
        if stop.is_set() or time.monotonic() > deadline:
            return
        try:
            async with http.post(base + PULL, json={"limit": 5}, headers=headers) as resp:
                tasks = (await resp.json())["tasks"]
            for task in tasks:
                report = {"status": "done", "task_id": task["task_id"], "lease_token": task["lease_token"],
                          "result": {"views": 10, "forwards": 0, "replies": 0, "reactions": 0}}
                async with http.post(base + REPORT, json=report, headers=headers) as resp:
                    results = (await resp.json())["results"]
                applied += [r["task_id"] for r in results if r["outcome"] == "applied"]
            if not tasks:
                await asyncio.sleep(0.05)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return


async def test_sigterm_under_load_exits_0_within_10_s_and_keeps_every_acknowledged_report() -> None:
    raise_own_limit(2000)
    with fleet() as f:
        f.config.write_text(E2E_CONFIG)
        daemon = f.start(accounts=40, nofile=(1024, 1024))
        await daemon.await_ready()
        async with ControlClient(f.socket_path, timeout=WAIT) as client:
            status = await client.status()
            token = (await client.request("POST", "/providers", body={"name": "acme"}))["token"]
            ids = [a["id"] for a in await client.all_accounts() if not a["is_probe"]]
            await client.request("POST", "/accounts/assign", body={"ids": ids, "executor": "acme"})
            quotas = [await client.request("POST", "/quotas", body={  # each makes a task a second
                "name": channel, "target": f"@{channel}", "action": "post_stats", "last_n_posts": 3,
                "quantity": 1000, "interval_seconds": 1, "expires_in_seconds": 3600})
                for channel in config.SimulatorConfig().channels]
        host, port = http_address(status)
        base = f"http://{host}:{port}"
        held = [await asyncio.open_connection(host, port) for _ in range(1200)]  # the cap is full of silent ones
        loris = [await asyncio.open_connection(host, port) for _ in range(20)]
        trickles = [asyncio.create_task(trickle(w, b"GET / HTTP/1.1\r\nX: " + b"a" * 100, pause=0.2)) for _, w in loris]
        applied: list[int] = []
        stop = asyncio.Event()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT)) as http:
            providers = [asyncio.create_task(provider_loop(http, base, token, applied, stop)) for _ in range(3)]
            deadline = time.monotonic() + 30
            for _ in range(600):
                if len(applied) >= 12 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            assert len(applied) >= 12, daemon.log()[-3000:]
            assert await daemon.astop(signal.SIGTERM, timeout=10.0) == 0, daemon.log()[-3000:]
            stop.set()
            await asyncio.wait_for(asyncio.gather(*providers), WAIT)
        for task in trickles:
            task.cancel()
        for _, writer in held + loris:
            writer.close()
        assert "Traceback" not in daemon.log(), daemon.log()[-3000:]
        again = f.start(accounts=40)
        await again.await_ready()
        async with ControlClient(f.socket_path, timeout=WAIT) as client:
            kept = {m["task_id"] for quota in quotas for m in await client.measurements(quota["id"], limit=5000)}
        assert again.stop(signal.SIGTERM) == 0
        assert set(applied) <= kept, sorted(set(applied) - kept)  # nothing acknowledged was lost
