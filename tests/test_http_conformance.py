"""HTTP conformance of the provider port: what openapi.json allows is accepted, every answer matches it.

Schemathesis (a property-based API fuzzer) runs with all its checks against a
real daemon subprocess on the simulator, over 127.0.0.1 only, with a real
provider token and accounts assigned to it, so pulls lease real tasks. The
other tests pin the findings one by one: 405 answers carry ``Allow``, a
JSON integer written ``5.0`` is an integer, and the open routes and unknown
paths answer as documented.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from daemon_proc import Fleet, fleet

from tgdaemon.provider.auth import TOKEN_RE
from tgdaemon.provider.openapi import ErrorBody, Health
from tgdaemon.quotas.messages import PullResponse

ST_TIMEOUT = 150.0  # seconds: the run below takes about 10 s on an idle machine
PULL = "/api/provider/telegram/tasks/pull"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Fleet, str, str]]:
    """(fleet, base URL, token): a daemon with a provider that has every account and two quotas."""
    with fleet() as f:
        daemon = f.start(accounts=10).wait_ready()
        sock = ("--socket", str(f.socket_path))
        added = f.cli("providers", "add", "fuzz", *sock)
        assert added.returncode == 0, added.stderr
        found = TOKEN_RE.search(added.stdout)
        assert found, added.stdout
        for result in f.cli_many(
                ("accounts", "assign", "--executor", "fuzz", *map(str, range(1, 11)), *sock),
                ("quotas", "add", "--name", "views", "--target", "@tgfleet_news", "--action", "post_stats",
                 "--last-n", "3", "--quantity", "100000", "--interval", "5s", "--expires-in", "1d", *sock)):
            assert result.returncode == 0, result.stderr
        port = re.search(r"http 127\.0\.0\.1:(\d+)", daemon.log())
        assert port, daemon.log()
        yield f, f"http://127.0.0.1:{port.group(1)}", found.group(0)


def test_schemathesis_with_all_checks_finds_nothing(served: tuple[Fleet, str, str]) -> None:
    f, base, token = served
    st = Path(sys.executable).with_name("st")
    result = subprocess.run(
        [str(st), "run", f"{base}/api/provider/openapi.json", "--url", base, "-H", f"Authorization: Bearer {token}",
         "--checks", "all", "--phases", "coverage,fuzzing", "--max-examples", "40", "--seed", "10",
         "--request-timeout", "10", "--no-color"],
        cwd=f.root, env=f.env, capture_output=True, text=True, timeout=ST_TIMEOUT,
        stdin=subprocess.DEVNULL, check=False)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "No issues found" in out, out
    assert token not in out


async def _call(method: str, url: str, *, token: str | None = None, body: Any = None,
                raw: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body is not None or raw is not None:
        headers["Content-Type"] = "application/json"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    async with aiohttp.ClientSession() as http, http.request(method, url, headers=headers, data=data) as resp:
        return resp.status, dict(resp.headers), await resp.read()


@pytest.mark.parametrize(("method", "path", "allow", "authenticated"), [
    ("POST", "/healthz", "GET,HEAD", False),
    ("DELETE", "/metrics", "GET,HEAD", False),
    ("GET", PULL, "POST", True),
    ("PUT", "/api/provider/whoami", "GET,HEAD", True),
])
async def test_405_carries_allow_and_a_json_error(served: tuple[Fleet, str, str], method: str, path: str,
                                                  allow: str, authenticated: bool) -> None:
    _, base, token = served
    status, headers, raw = await _call(method, base + path, token=token if authenticated else None)
    assert status == 405
    assert headers["Allow"] == allow
    assert msgspec.json.decode(raw, type=ErrorBody).error.code == "method_not_allowed"


@pytest.mark.parametrize(("limit", "ok"), [(5.0, True), (1e3, True), (5.5, False), (1e300, False),
                                           (1001.0, False), (0.0, False)])
async def test_an_integral_float_is_an_integer(served: tuple[Fleet, str, str], limit: float, ok: bool) -> None:
    _, base, token = served
    status, _, raw = await _call("POST", base + PULL, token=token, raw=f'{{"limit": {limit!r}}}'.encode())
    if ok:
        assert status == 200, raw
        assert len(msgspec.json.decode(raw, type=PullResponse).tasks) <= limit
    else:
        assert status == 400, raw
        assert "body limit" in msgspec.json.decode(raw, type=ErrorBody).error.message


async def test_integral_floats_deep_in_a_report_batch(served: tuple[Fleet, str, str]) -> None:
    _, base, token = served
    body = [{"status": "done", "task_id": 9.0e6, "lease_token": "0" * 32,
             "result": {"views": 12.0, "reactions_by_emoji": {"👍": 3.0}}},
            {"status": "failed", "task_id": 9000001.0, "lease_token": "0" * 32, "error_code": "CHANNEL_PRIVATE"}]
    status, _, raw = await _call("POST", base + "/api/provider/telegram/tasks/report", token=token, body=body)
    assert status == 200, raw
    assert json.loads(raw) == {"results": [{"task_id": 9000000, "outcome": "not_found"},
                                           {"task_id": 9000001, "outcome": "not_found"}]}


async def test_a_deeply_nested_body_is_a_400_not_a_500(served: tuple[Fleet, str, str]) -> None:
    """The strict decode refuses it at its first field; the slow path for 5.0 must not then recurse into it."""
    _, base, token = served
    raw = b'{"limit": 1, "lease_seconds": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    status, _, body = await _call("POST", base + PULL, token=token, raw=raw)
    assert status == 400, body
    assert msgspec.json.decode(body, type=ErrorBody).error.code == "invalid_body"


async def test_open_routes_and_unknown_paths_answer_as_documented(served: tuple[Fleet, str, str]) -> None:
    _, base, token = served
    status, headers, raw = await _call("GET", base + "/healthz")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert msgspec.json.decode(raw, type=Health).ok is True
    status, headers, raw = await _call("GET", base + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert b"tgfleet_stream_subscribers" in raw
    for path, auth, expected in (("/nope", None, 404), ("/v1/status", None, 404),  # the control API is not on TCP
                                 ("/api/provider/nope", None, 401), ("/api/provider/nope", token, 404)):
        status, headers, raw = await _call("GET", base + path, token=auth)
        assert status == expected, (path, raw)
        assert headers["Content-Type"] == "application/json"
        msgspec.json.decode(raw, type=ErrorBody)
        if expected == 401:
            assert headers["WWW-Authenticate"] == 'Bearer realm="tgfleet"'


async def test_the_document_declares_what_the_routes_answer(served: tuple[Fleet, str, str]) -> None:
    _, base, token = served
    status, _, raw = await _call("GET", base + "/api/provider/openapi.json", token=token)
    assert status == 200
    doc = json.loads(raw)
    for path, item in doc["paths"].items():
        for operation in item.values():
            assert "default" in operation["responses"], path  # 404/405/500: the same error body
            if operation.get("security"):
                assert "WWW-Authenticate" in operation["responses"]["401"]["headers"], path
    leased = doc["components"]["schemas"]["LeasedTask"]["properties"]["lease_expires_at"]
    assert leased["format"] == "date-time"
