"""Provider identities: add/list/revoke through the CLI and the control API, and bearer auth on the provider API.

A real daemon in-process (``running_daemon``), the CLI as a subprocess over
its real Unix socket, and real HTTP on 127.0.0.1 for the provider side.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from daemon_proc import CLI_TIMEOUT, isolated_env, no_traceback
from multidict import CIMultiDict

from tgdaemon.control.client import ControlClient
from tgdaemon.errors import ApiError
from tgdaemon.lifecycle.daemon import Daemon
from tgdaemon.provider import auth

TOKEN_RE = re.compile(r"tgf_[A-Za-z0-9_-]{43}")
BAD_NAMES = ["local", "Alpha", "a", "1abc", "-ab", "a" * 33, "ab cd", "ab/c", "émile", "ab.c", ""]


async def cli(tmp_path: Path, daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m tgdaemon ARGS --socket …`` without blocking the loop the in-process daemon runs on."""
    argv = [sys.executable, "-m", "tgdaemon", *args, "--socket", str(daemon.runtime.socket_path)]
    proc = await asyncio.create_subprocess_exec(*argv, env=isolated_env(tmp_path), stdin=subprocess.DEVNULL,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT)
    result = subprocess.CompletedProcess(argv, proc.returncode or 0, out.decode(), err.decode())
    no_traceback(result)
    return result


async def call(daemon: Daemon, path: str, token: str | None = None,
               headers: CIMultiDict[str] | None = None) -> tuple[int, Any, aiohttp.ClientResponse]:
    """GET a provider API path over TCP; (status, decoded JSON, response)."""
    hdrs = headers if headers is not None else CIMultiDict()
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://{daemon.runtime.http_bound}{path}", headers=hdrs) as resp:
        return resp.status, json.loads(await resp.read()), resp


async def add(client: ControlClient, name: str) -> str:
    return (await client.request("POST", "/providers", body={"name": name}))["token"]


async def _error(aw: Any) -> ApiError:
    with pytest.raises(ApiError) as exc:
        await aw
    return exc.value


def assert_refused(status: int, body: Any, resp: aiohttp.ClientResponse, code: str, *secrets: str) -> None:
    assert status == 401, body
    assert resp.content_type == "application/json"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    for secret in secrets:
        assert secret not in json.dumps(body) and secret not in str(resp.headers)


async def test_cli_add_list_revoke(running_daemon: Any, tmp_path: Path) -> None:
    daemon, _ = running_daemon
    added = await cli(tmp_path, daemon, "providers", "add", "worker-1")
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert added.stdout == token + "\n" and TOKEN_RE.fullmatch(token), added.stdout
    assert "only this once" in added.stderr and token not in added.stderr
    status, body, _ = await call(daemon, "/api/provider/whoami", token)
    assert (status, body) == (200, {"provider": "worker-1"})

    table, as_json, again = await asyncio.gather(
        cli(tmp_path, daemon, "providers", "list"), cli(tmp_path, daemon, "providers", "list", "--json"),
        cli(tmp_path, daemon, "providers", "add", "worker-1"))
    assert table.returncode == 0 and "worker-1" in table.stdout and "LAST SEEN" in table.stdout, table.stderr
    rows = json.loads(as_json.stdout)
    assert [set(r) for r in rows] == [{"name", "created_at", "last_seen_at", "revoked_at"}]
    assert rows[0]["name"] == "worker-1" and rows[0]["last_seen_at"] and rows[0]["revoked_at"] is None
    assert again.returncode == 1 and again.stdout == ""
    assert "provider worker-1 already exists" in again.stderr, again.stderr

    revoked = await cli(tmp_path, daemon, "providers", "revoke", "worker-1")
    assert revoked.returncode == 0 and revoked.stdout.strip() == "provider worker-1 revoked", revoked.stderr
    twice = await cli(tmp_path, daemon, "providers", "revoke", "worker-1")
    assert twice.returncode == 0 and "was already revoked at" in twice.stdout and "nothing changed" in twice.stdout
    assert_refused(*await call(daemon, "/api/provider/whoami", token), "revoked", token)
    listed = json.loads((await cli(tmp_path, daemon, "providers", "list", "--json")).stdout)
    assert listed[0]["revoked_at"] is not None

    bad = await asyncio.gather(*(cli(tmp_path, daemon, "providers", "add", n) for n in ("local", "Bad", "x")),
                               cli(tmp_path, daemon, "providers", "revoke", "nobody"))
    assert [r.returncode for r in bad] == [2, 2, 2, 1]
    assert "reserved for the daemon's own executor" in bad[0].stderr
    assert "a lowercase letter first" in bad[1].stderr and "2 to 32 characters" in bad[2].stderr
    assert "provider nobody: no such provider" in bad[3].stderr
    for r in (table, as_json, again, revoked, twice, *bad):
        assert token not in r.stdout + r.stderr


async def test_control_api_add_list_revoke(running_daemon: Any) -> None:
    _, client = running_daemon
    data = await client.request("POST", "/providers", body={"name": "alpha"})
    assert set(data) == {"provider", "token"} and TOKEN_RE.fullmatch(data["token"])
    assert data["provider"]["name"] == "alpha" and data["provider"]["last_seen_at"] is None
    token = data["token"]

    err = await _error(add(client, "alpha"))
    assert (err.status, err.code) == (409, "conflict") and "already exists" in str(err)
    for name in BAD_NAMES:
        err = await _error(add(client, name))
        assert (err.status, err.code) == (400, "invalid_name"), name
    assert "reserved" in str(await _error(add(client, "local")))
    for body in ({}, {"name": 7}, {"name": "gamma", "token": "tgf_mine"}):
        err = await _error(client.request("POST", "/providers", body=body))
        assert (err.status, err.code) == (400, "invalid_body"), body
    err = await _error(client.request("POST", "/providers/nobody/revoke"))
    assert (err.status, err.code) == (404, "not_found")

    first = await client.request("POST", "/providers/alpha/revoke")
    second = await client.request("POST", "/providers/alpha/revoke")
    assert first["changed"] is True and second["changed"] is False
    assert first["provider"]["revoked_at"] == second["provider"]["revoked_at"] is not None
    err = await _error(add(client, "alpha"))
    assert err.status == 409 and "revoked" in str(err)
    await add(client, "beta")
    listed = (await client.request("GET", "/providers"))["providers"]
    assert [(p["name"], p["revoked_at"] is not None) for p in listed] == [("alpha", True), ("beta", False)]
    assert all(set(p) == {"name", "created_at", "last_seen_at", "revoked_at"} for p in listed)

    events = [e for e in await client.events(limit=50) if e["kind"].startswith("provider.")]
    assert [(e["kind"], e["data"]) for e in events] == [
        ("provider.added", {"provider": "beta"}), ("provider.revoked", {"provider": "alpha"}),
        ("provider.added", {"provider": "alpha"})]
    assert token not in json.dumps(events) and auth.hash_token(token) not in json.dumps(events)


async def test_bearer_auth_refusals(running_daemon: Any) -> None:
    daemon, client = running_daemon
    token = await add(client, "beta")
    stranger = auth.new_token()
    for header in ("", "Bearer", "Bearer ", f"Basic {token}", f"Token {token}", f"Bearer {token[:-1]}",
                   f"Bearer {token}x", f"Bearer {token} {token}", f"Bearer {token.upper()}", "Bearer tgf_" + "é" * 43,
                   f"Bearer {stranger}"):
        assert_refused(*await call(daemon, "/api/provider/whoami", headers=CIMultiDict(Authorization=header)),
                       "unauthorized", token, stranger)
    missing = await call(daemon, "/api/provider/whoami")
    assert_refused(*missing, "unauthorized")
    assert "missing" in missing[1]["error"]["message"]
    assert_refused(*await call(daemon, "/api/provider/whoami", headers=CIMultiDict(
        [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")])), "unauthorized", token)
    assert_refused(*await call(daemon, "/api/provider/nope"), "unauthorized")

    status, body, _ = await call(daemon, "/api/provider/whoami", headers=CIMultiDict(Authorization=f"bearer {token}"))
    assert (status, body) == (200, {"provider": "beta"})
    status, body, _ = await call(daemon, "/api/provider/nope", token)
    assert status == 404 and body["error"]["code"] == "not_found"
    assert (await call(daemon, "/healthz"))[0] == 200  # outside /api/provider/: no token needed

    await client.request("POST", "/providers/beta/revoke")
    refused = await call(daemon, "/api/provider/whoami", token)
    assert_refused(*refused, "revoked", token)
    assert "beta" in refused[1]["error"]["message"]
    other = await add(client, "gamma")  # a revoke touches only its own provider
    assert (await call(daemon, "/api/provider/whoami", other))[:2] == (200, {"provider": "gamma"})


async def test_token_stored_only_as_its_hash(running_daemon: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    daemon, client = running_daemon
    store = daemon.runtime.store
    token = await add(client, "delta")
    assert (await call(daemon, "/api/provider/whoami", token))[0] == 200
    assert (await call(daemon, "/api/provider/whoami", token + "x"))[0] == 401
    await client.request("POST", "/providers/delta/revoke")
    assert (await call(daemon, "/api/provider/whoami", token))[0] == 401

    digest = hashlib.sha256(token.encode()).hexdigest()
    rows = list(await store.read("SELECT token_hash FROM providers WHERE name = 'delta'"))
    assert rows[0][0] == digest
    files = [p for p in store.path.parent.iterdir() if p.name.startswith(store.path.name)]
    blob = b"".join(p.read_bytes() for p in files)
    assert digest.encode() in blob, "the database files were not where the test looked"
    assert token.encode() not in blob and token[4:].encode() not in blob
    assert token not in caplog.text and token[4:] not in caplog.text
    events = json.dumps(await store.recent_events(limit=1000))
    assert "delta" in events and token[4:] not in events and digest not in events
    assert token[4:] not in json.dumps(await client.request("GET", "/providers"))


async def test_last_seen_is_throttled(running_daemon: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    daemon, client = running_daemon
    store = daemon.runtime.store
    writes: list[str] = []
    real = store.provider_seen

    async def counted(name: str) -> None:
        writes.append(name)
        await real(name)

    monkeypatch.setattr(store, "provider_seen", counted)
    monkeypatch.setattr(auth, "SEEN_INTERVAL", 0.5)

    async def last_seen(name: str) -> float | None:
        return next(iter(await store.read("SELECT last_seen_at FROM providers WHERE name = ?", (name,))))[0]

    one, two = await add(client, "one"), await add(client, "two")
    assert await last_seen("one") is None
    await call(daemon, "/api/provider/whoami", auth.new_token())  # unknown and revoked tokens never count as seen
    first = [await call(daemon, "/api/provider/whoami", one)]
    seen = await last_seen("one")
    assert seen is not None
    first += await asyncio.gather(*(call(daemon, "/api/provider/whoami", one) for _ in range(30)))
    assert all(status == 200 for status, _, _ in first)
    assert writes == ["one"] and await last_seen("one") == seen
    await call(daemon, "/api/provider/whoami", two)  # each provider has its own clock
    assert writes == ["one", "two"]

    await asyncio.sleep(0.6)
    await call(daemon, "/api/provider/whoami", one)
    assert writes == ["one", "two", "one"]
    later = await last_seen("one")
    assert later is not None and later > seen
    listed = {p["name"]: p for p in (await client.request("GET", "/providers"))["providers"]}
    assert listed["one"]["last_seen_at"] is not None

    await client.request("POST", "/providers/two/revoke")
    await asyncio.sleep(0.6)
    await call(daemon, "/api/provider/whoami", two)
    assert writes == ["one", "two", "one"]
