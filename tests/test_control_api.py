"""The control API of a real daemon, over its real Unix socket (and what the TCP port must not expose)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import signal
import socket
import stat
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from conftest import FLEET_SIZE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tgdaemon import __version__
from tgdaemon.control.client import ControlClient
from tgdaemon.errors import ApiError, DaemonNotRunning, TgfleetError
from tgdaemon.httpjson import MAX_BODY
from tgdaemon.store import STATES
from tgdaemon.wire import Account, AccountPage

ISO_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
ACCOUNT_KEYS = {"id", "label", "phone_masked", "state", "is_probe", "executor", "cooldown_until",
                "cooldown_reason", "disabled_reason", "setup", "last_error_code"}


@pytest.fixture
async def http(running_daemon):
    """A raw aiohttp session on the daemon's socket, for requests ControlClient would never send."""
    daemon, _ = running_daemon
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(daemon.runtime.socket_path)),
                                     timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def call(http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with http.request(method, f"http://tgdaemon{path}", **kwargs) as resp:
        raw = await resp.read()
        assert resp.content_type == "application/json", (resp.status, raw[:200])
        return resp.status, json.loads(raw)


def assert_error(status: int, body: Any, expected: int) -> dict[str, str]:
    assert status == expected, body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] and body["error"]["message"]
    return body["error"]


def cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


# --- status and listing ------------------------------------------------------------------------

async def test_status(running_daemon) -> None:
    daemon, client = running_daemon
    status = await client.status()
    assert status["version"] == __version__
    assert isinstance(status["uptime_seconds"], (int, float)) and status["uptime_seconds"] >= 0
    assert set(status["accounts"]) == set(STATES)
    assert sum(status["accounts"].values()) == FLEET_SIZE
    assert set(status["tasks"]) == {"setup", "pulled"}
    assert status["simulator"]["channels"] == daemon.cfg.simulator.channels
    assert len(status["simulator"]["channels"]) >= 1
    assert status["socket"] == str(daemon.runtime.socket_path)
    assert status["pid"] == os.getpid()
    assert status["stream"]["epoch"] == daemon.runtime.hub.epoch

    await client.disable(4, "testing")
    after = await client.status()
    assert after["accounts"]["disabled"] == status["accounts"]["disabled"] + 1


async def test_account_json(running_daemon) -> None:
    daemon, client = running_daemon
    async with daemon.runtime.store.tx() as tx:
        await tx.execute("UPDATE accounts SET cooldown_until = ?, cooldown_reason = 'FLOOD_WAIT',"
                         " last_error_code = 'FLOOD_WAIT' WHERE id = 3", (time.time() + 86400,))
    accounts = (await client.accounts())["accounts"]
    assert len(accounts) == FLEET_SIZE
    for account in accounts:
        assert ACCOUNT_KEYS <= set(account)
        assert isinstance(account["id"], int) and isinstance(account["is_probe"], bool)
        assert account["state"] in STATES
        assert account["cooldown_until"] is None or ISO_Z.fullmatch(account["cooldown_until"])
        assert set(account["setup"]) == {"done", "total"}
        assert "*" in account["phone_masked"]
    third = await client.account(3)
    assert third["state"] == "cooldown" and ISO_Z.fullmatch(third["cooldown_until"])
    assert third["cooldown_reason"] == "FLOOD_WAIT" and third["last_error_code"] == "FLOOD_WAIT"
    assert any(a["is_probe"] for a in accounts)  # the simulator makes some probes


async def test_list_filter_sort_page(running_daemon) -> None:
    _, client = running_daemon
    for aid in (5, 9, 40):
        await client.disable(aid, "r")
    disabled = (await client.accounts(state="disabled"))["accounts"]
    assert [a["id"] for a in disabled] == [5, 9, 40]
    ready = await client.all_accounts(state="ready", page=7)
    assert len(ready) == FLEET_SIZE - 3 and all(a["state"] == "ready" for a in ready)

    full = (await client.accounts(sort="label", desc=True, limit=1000))["accounts"]
    assert [a["label"] for a in full] == sorted((a["label"] for a in full), reverse=True)
    paged = await client.all_accounts(sort="label", desc=True, page=6)
    assert [a["id"] for a in paged] == [a["id"] for a in full]

    first = await client.accounts(limit=10)
    assert len(first["accounts"]) == 10 and first["next"]
    second = await client.accounts(limit=10, after=first["next"])
    assert [a["id"] for a in second["accounts"]] == list(range(11, 21))

    label = full[0]["label"]
    assert [a["id"] for a in (await client.accounts(q=label))["accounts"]] == [full[0]["id"]]
    by_id = [a["id"] for a in (await client.accounts(q="17", limit=1000))["accounts"]]
    assert 17 in by_id  # by id (phones containing 17 may match too)


async def test_a_listing_is_byte_for_byte_the_pages_encoding_of_the_views(running_daemon, http) -> None:
    """The database builds each account's JSON: the body is still exactly the ``AccountPage`` of the store's
    views, encoded as before, cursor included, in every order and filter."""
    daemon, client = running_daemon
    store = daemon.runtime.store
    await client.disable(4, 'quote " and \\ backslash')
    async with store.tx() as tx:
        await tx.execute("UPDATE accounts SET cooldown_until = ?, cooldown_reason = 'FLOOD_WAIT', label = 'tab\there'"
                         " WHERE id = 6", (time.time() + 86400.75,))
    for query in ({}, {"limit": 7}, {"sort": "state", "desc": True, "limit": 9}, {"state": "disabled"},
                  {"q": "sim", "sort": "label", "limit": 11}, {"sort": "cooldown", "limit": 5}):
        after = None
        for _ in range(FLEET_SIZE + 1):  # bounded
            params = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in query.items()}
            async with http.get("http://tgdaemon/v1/accounts", params={**params, **({"after": after} if after
                                                                                     else {})}) as resp:
                assert resp.status == 200 and resp.content_type == "application/json"
                body = await resp.read()
            views, nxt = await store.list_accounts(**query, after=after)
            assert body == msgspec.json.encode(AccountPage(accounts=msgspec.convert(views, list[Account]), next=nxt))
            if (after := nxt) is None:
                break
        else:
            pytest.fail("paging did not end")


async def test_disable_enable_roundtrip_and_events(running_daemon) -> None:
    _, client = running_daemon
    result = await client.disable(7, "operator said so")
    assert result["changed"] is True and result["account"]["state"] == "disabled"
    assert result["account"]["disabled_reason"] == "operator said so"
    again = await client.disable(7, "twice")
    assert again["changed"] is False and again["account"]["disabled_reason"] == "operator said so"
    result = await client.enable(7)
    assert result["changed"] is True and result["account"]["state"] != "disabled"
    assert (await client.enable(7))["changed"] is False
    kinds = [e["kind"] for e in await client.events(account_id=7)]
    assert kinds == ["account.enabled", "account.disabled"]


# --- bad input: 4xx with a JSON error, never 5xx -----------------------------------------------

async def test_disable_requires_a_reason(http) -> None:
    for body in ({}, {"reason": ""}, {"reason": None}, {"reason": 5}, [], "reason"):
        status, data = await call(http, "POST", "/v1/accounts/1/disable", json=body)
        error = assert_error(status, data, 400)
        assert "reason" in error["message"] or "body" in error["message"]
    status, data = await call(http, "GET", "/v1/accounts/1")
    assert data["state"] == "ready"


async def test_disable_blank_reason_is_refused(http) -> None:
    status, data = await call(http, "POST", "/v1/accounts/1/disable", json={"reason": "   "})
    assert_error(status, data, 400)


async def test_unknown_account_404(http) -> None:
    for method, path, body in (("GET", "/v1/accounts/999", None),
                               ("POST", "/v1/accounts/999/disable", {"reason": "x"}),
                               ("POST", "/v1/accounts/999/enable", {}),
                               ("GET", "/v1/accounts/abc", None),
                               ("GET", "/v1/no/such/route", None)):
        status, data = await call(http, method, path, json=body)
        assert_error(status, data, 404)


@pytest.mark.parametrize("raw", [
    "abc", "-1", "+1", "1.0", "1e3", "0x10", "%201", "1%00", "0",
    "%C2%B2",           # '²'
    "%D9%A1%D9%A2",     # Arabic-Indic '١٢'
])
async def test_odd_account_ids_are_404(http, raw: str) -> None:
    for method, suffix, body in (("GET", "", None), ("POST", "/disable", {"reason": "x"}), ("POST", "/enable", {})):
        async with http.request(method, f"http://tgdaemon/v1/accounts/{raw}{suffix}", json=body) as resp:
            status, data = resp.status, json.loads(await resp.read())
        assert_error(status, data, 404)


async def test_out_of_range_numbers_are_not_5xx(http) -> None:
    huge = "9" * 25
    for method, path, body in (("GET", f"/v1/accounts/{huge}", None),
                               ("POST", f"/v1/accounts/{huge}/disable", {"reason": "x"}),
                               ("GET", f"/v1/events?account_id={huge}", None),
                               ("GET", f"/v1/accounts?after={cursor([2**64, 1])}", None),
                               ("GET", f"/v1/accounts?after={cursor(['x', 2**64])}", None)):
        status, data = await call(http, method, path, json=body)
        assert 400 <= status < 500, (path, status, data)


async def test_malformed_unknown_field_wrong_type(http) -> None:
    for raw in (b'{"reason":', b"not json", b"", b'{"reason": "x"} trailing'):
        status, data = await call(http, "POST", "/v1/accounts/1/disable", data=raw,
                                  headers={"Content-Type": "application/json"})
        assert_error(status, data, 400)
    status, data = await call(http, "POST", "/v1/accounts/1/disable", json={"reason": "x", "force": True})
    assert "force" in assert_error(status, data, 400)["message"]
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        status, data = await call(http, "POST", "/v1/accounts/1/disable", data=b'{"reason": "x"}',
                                  headers={"Content-Type": content_type})
        assert assert_error(status, data, 415)["code"] == "unsupported_media_type"
    status, data = await call(http, "GET", "/v1/accounts/1")
    assert data["state"] == "ready"  # none of it disabled anything


async def test_oversized_body_413(http) -> None:
    too_big = b'{"reason": "' + b"x" * MAX_BODY + b'"}'
    status, data = await call(http, "POST", "/v1/accounts/1/disable", data=too_big,
                              headers={"Content-Type": "application/json"})
    assert assert_error(status, data, 413)["code"] == "too_large"

    async def chunks():  # no Content-Length: the limit must hold while reading
        for _ in range(MAX_BODY // 65536 + 2):
            yield b" " * 65536

    status, data = await call(http, "POST", "/v1/accounts/1/disable", data=chunks(),
                              headers={"Content-Type": "application/json"})
    assert_error(status, data, 413)
    # exactly at the limit is read and judged on its content
    at_limit = b'{"reason": "x"}'.ljust(MAX_BODY, b" ")
    status, data = await call(http, "POST", "/v1/accounts/1/disable", data=at_limit,
                              headers={"Content-Type": "application/json"})
    assert status == 200 and data["changed"] is True


@pytest.mark.parametrize("query", [
    "state=busyish", "state=", "sort=phone", "limit=0", "limit=20001", "limit=ten", "desc=maybe",
    "after=garbage!", f"after={cursor({'a': 1})}", f"after={cursor([[1], 1])}", "unknown=1", "q=" + "x" * 201,
])
async def test_bad_list_queries_400(http, query: str) -> None:
    status, data = await call(http, "GET", f"/v1/accounts?{query}")
    assert assert_error(status, data, 400)["code"] == "invalid_query"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(
    st.binary(max_size=64),
    st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
                 lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
                 max_leaves=6).map(lambda v: json.dumps(v).encode()),
))
async def test_random_bodies_never_5xx(http, body: bytes) -> None:
    status, data = await call(http, "POST", "/v1/accounts/2/disable", data=body,
                              headers={"Content-Type": "application/json"})
    assert status in (200, 400), (body, status, data)
    if status == 400:
        assert_error(status, data, 400)


# --- who may talk to it ------------------------------------------------------------------------

async def test_socket_mode_0600(running_daemon) -> None:
    daemon, _ = running_daemon
    mode = os.stat(daemon.runtime.socket_path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


async def test_control_api_not_on_tcp(running_daemon) -> None:
    daemon, _ = running_daemon
    base = f"http://{daemon.runtime.http_bound}"
    assert not daemon.runtime.http_bound.endswith(":0")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for path in ("/v1/status", "/v1/accounts", "/v1/accounts/1", "/v1/watch"):
            async with session.get(base + path) as resp:
                assert resp.status == 404, path
                assert "accounts" not in await resp.text()
        async with session.post(base + "/v1/accounts/1/disable", json={"reason": "x"}) as resp:
            assert resp.status == 404
        async with session.get(base + "/healthz") as resp:
            assert resp.status == 200
            assert (await resp.json())["ok"] is True
    assert (await daemon.runtime.store.get_account(1))["state"] == "ready"


def _raw_requests(sock_path: str) -> list[str]:
    """Runs in the forked child: two raw HTTP requests over AF_UNIX, the replies as text."""
    out = []
    for path in ("/v1/status", "/v1/watch"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(sock_path)
        extra = ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n") if path.endswith("watch") else "Connection: close\r\n"
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: tgdaemon\r\n{extra}\r\n".encode())
        data = b""
        for _ in range(100):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data and data.rstrip().endswith(b"}"):
                break
        s.close()
        out.append(data.decode(errors="replace").replace("\r\n", "\n"))
    return out


def _run_as_nobody(sock_path: str) -> tuple[int, str]:
    """Fork; the child drops to uid/gid 65534 and talks to the socket; returns (exit status, its output)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no asyncio, no logging, only the socket module, then _exit
        code = 1
        try:
            os.close(read_fd)
            signal.alarm(15)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            replies = _raw_requests(sock_path)
            os.write(write_fd, "\x00".join([str(os.getuid()), *replies]).encode())
            code = 0
        except BaseException as exc:  # noqa: BLE001 - reported to the parent through the pipe
            os.write(write_fd, f"child failed: {exc!r}".encode())
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks = []
    with os.fdopen(read_fd, "rb") as pipe:
        for _ in range(10_000):
            chunk = pipe.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    return status, b"".join(chunks).decode(errors="replace")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a peer under another uid")
async def test_peer_with_another_uid_gets_403(running_daemon, short_dir: Path) -> None:
    daemon, client = running_daemon
    sock = daemon.runtime.socket_path
    os.chmod(short_dir, 0o755)
    os.chmod(sock, 0o666)  # as if someone loosened it by hand: SO_PEERCRED must still refuse
    # the child talks to this process's event loop, so wait for it in a thread (bounded by its alarm)
    status, out = await asyncio.wait_for(asyncio.to_thread(_run_as_nobody, str(sock)), 30)
    assert os.waitstatus_to_exitcode(status) == 0, out
    uid, status_reply, watch_reply = out.split("\x00")
    assert uid == "65534"
    for reply in (status_reply, watch_reply):
        assert reply.startswith("HTTP/1.1 403"), reply[:200]
        body = json.loads(reply.split("\n\n", 1)[1])
        assert body["error"]["code"] == "forbidden"
        assert "accounts" not in body
    assert (await client.status())["version"] == __version__  # the owner still gets in


async def test_no_daemon_means_daemon_not_running(short_dir: Path) -> None:
    async with ControlClient(short_dir / "absent.sock", timeout=5) as client:
        with pytest.raises(DaemonNotRunning) as info:
            await client.status()
    assert "not running" in str(info.value) and "\n" not in str(info.value)


async def test_client_raises_api_error(running_daemon) -> None:
    _, client = running_daemon
    with pytest.raises(ApiError) as info:
        await client.account(12345)
    assert info.value.status == 404 and info.value.code == "not_found"


async def _half_an_export(short_dir: Path, then_close: bool) -> tuple[asyncio.AbstractServer, Path]:
    """A peer on a Unix socket that starts a chunked 200 answer, sends one chunk, and then closes the
    connection or falls silent: what a daemon killed or frozen halfway through an export looks like."""
    sock = short_dir / "half.sock"

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\na,b\r\n\r\n")
        await writer.drain()
        if not then_close:
            await asyncio.sleep(30)  # bounded: the client gives up long before
        writer.close()

    return await asyncio.start_unix_server(answer, path=str(sock)), sock


@pytest.mark.parametrize("then_close", [True, False], ids=["broken off", "silent"])
async def test_an_export_cut_short_is_one_line_and_keeps_what_came(short_dir: Path, then_close: bool) -> None:
    server, sock = await _half_an_export(short_dir, then_close)
    async with server:
        out = io.BytesIO()
        async with ControlClient(sock, timeout=1) as client:
            with pytest.raises(TgfleetError) as info:
                await client.export_measurements_to(1, "csv", out)
    message = str(info.value)
    assert "\n" not in message and "incomplete" in message
    assert ("broke off" if then_close else "nothing came from the daemon for 1 s") in message
    assert out.getvalue() == b"a,b\r\n"
