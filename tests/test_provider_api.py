"""The provider API over real HTTP on 127.0.0.1: pull, report, extend, openapi.json, and bad input on every route.

An in-process daemon on the simulator for the route-by-route checks; a real
``tgdaemon run --simulate`` subprocess for the end-to-end run, with this test
acting as the provider until a quota is used up. Answers are decoded with the
API's own message structs (strict, unknown fields refused), so an answer that
strays from ``openapi.json`` fails the test.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from daemon_proc import Fleet, fleet

from tgdaemon.control.client import ControlClient
from tgdaemon.errors import ApiError
from tgdaemon.lifecycle.daemon import Daemon
from tgdaemon.provider.api import add_routes as add_provider_routes
from tgdaemon.provider.openapi import ErrorBody
from tgdaemon.quotas.messages import (
    ExtendResponse,
    LeasedTask,
    PullResponse,
    ReportResponse,
)

ROUTES = ("/api/provider/telegram/tasks/pull", "/api/provider/telegram/tasks/report",
          "/api/provider/telegram/tasks/extend")
VALID = {ROUTES[0]: {"limit": 5},
         ROUTES[1]: {"status": "done", "task_id": 1, "lease_token": "0" * 32, "result": {"views": 1}},
         ROUTES[2]: {"leases": [{"task_id": 1, "lease_token": "0" * 32}]}}
ANSWERS = {ROUTES[0]: PullResponse, ROUTES[1]: ReportResponse, ROUTES[2]: ExtendResponse}
WAIT_SECONDS = 30.0


class Provider:
    """A provider as a client sees it: a token and the daemon's TCP address."""

    def __init__(self, http: aiohttp.ClientSession, base: str, token: str) -> None:
        self.http, self.base, self.token = http, base, token

    async def post(self, path: str, body: Any = None, *, raw: bytes | None = None,
                   content_type: str = "application/json", token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token or self.token}", "Content-Type": content_type}
        data = raw if raw is not None else json.dumps(body).encode()
        async with self.http.post(self.base + path, data=data, headers=headers) as resp:
            payload = await resp.read()
            assert resp.content_type == "application/json", (resp.status, payload[:200])
            return resp.status, json.loads(payload)


async def provider(daemon: Daemon, client: ControlClient, http: aiohttp.ClientSession, name: str) -> Provider:
    token = (await client.request("POST", "/providers", body={"name": name}))["token"]
    return Provider(http, f"http://{daemon.runtime.http_bound}", token)


def assert_error(status: int, body: Any, expected: int) -> None:
    assert status == expected, body
    msgspec.convert(body, ErrorBody)  # exactly {"error": {"code", "message"}}
    assert body["error"]["message"]


async def test_bad_input_on_every_route_is_a_4xx_with_a_json_error(running_daemon: Any) -> None:
    daemon, client = running_daemon
    async with aiohttp.ClientSession() as http:
        p = await provider(daemon, client, http, "fuzzy")
        revoked = await provider(daemon, client, http, "gone")
        await client.request("POST", "/providers/gone/revoke", body={})
        for route in ROUTES:
            status, body = await p.post(route, raw=b'{"limit": ')
            assert_error(status, body, 400)
            status, body = await p.post(route, {**VALID[route], "surprise": 1})
            assert_error(status, body, 400)
            assert "surprise" in body["error"]["message"]
            status, body = await p.post(route, raw=b"[" + b"1," * 600_000 + b"1]")
            assert_error(status, body, 413)
            status, body = await p.post(route, raw=json.dumps(VALID[route]).encode(), content_type="text/plain")
            assert_error(status, body, 415)
            status, body = await p.post(route, VALID[route], token="tgf_" + "A" * 43)
            assert_error(status, body, 401)
            status, body = await p.post(route, VALID[route], token=revoked.token)
            assert_error(status, body, 401)
            assert body["error"]["code"] == "revoked"
            status, body = await p.post(route, VALID[route])
            assert status == 200, body
            msgspec.convert(body, ANSWERS[route])
        wrong_types = [(ROUTES[0], {"limit": "5"}), (ROUTES[0], {"limit": 0}), (ROUTES[0], {"limit": 10_001}),
                       (ROUTES[0], {"lease_seconds": 1}), (ROUTES[1], {"status": "done", "task_id": 1}),
                       (ROUTES[1], {**VALID[ROUTES[1]], "lease_token": "not-hex"}),
                       (ROUTES[1], {"status": "failed", "task_id": 1, "lease_token": "0" * 32}),
                       (ROUTES[1], {"status": "failed", "task_id": 1, "lease_token": "0" * 32,
                                    "error_code": "flood wait"}),
                       (ROUTES[1], {**VALID[ROUTES[1]], "result": {"views": -1}}),
                       (ROUTES[1], []), (ROUTES[2], {"leases": []}), (ROUTES[2], {"leases": [{"task_id": 1}]})]
        for route, bad in wrong_types:
            status, body = await p.post(route, bad)
            assert_error(status, body, 400)


def mutations(rng: random.Random, value: Any, depth: int = 0) -> Any:
    """A valid body bent at random: values swapped for other JSON types, keys dropped or added."""
    pool: list[Any] = [None, True, -1, 0, 2**70, 1.5, "", "x" * 300, "0" * 32, [], {}, [1, "a"], {"a": None}]
    if isinstance(value, dict) and depth < 3:
        out = {k: mutations(rng, v, depth + 1) if rng.random() < 0.5 else v for k, v in value.items()
               if rng.random() > 0.15}
        if rng.random() < 0.2:
            out[rng.choice(["x", "status", "limit", "task_id"])] = rng.choice(pool)
        return out
    if isinstance(value, list) and depth < 3:
        return [mutations(rng, v, depth + 1) for v in value] * rng.choice([0, 1, 2])
    return rng.choice(pool) if rng.random() < 0.7 else value


async def test_fuzzed_bodies_never_get_a_5xx_and_answers_match_the_schema(running_daemon: Any) -> None:
    daemon, client = running_daemon
    rng = random.Random(7)
    async with aiohttp.ClientSession() as http:
        p = await provider(daemon, client, http, "fuzz")
        statuses: set[int] = set()
        for _ in range(120):
            route = rng.choice(ROUTES)
            status, body = await p.post(route, mutations(rng, VALID[route]))
            statuses.add(status)
            assert status < 500, (route, body)
            msgspec.convert(body, ANSWERS[route] if status == 200 else ErrorBody)
    assert {200, 400} <= statuses  # the fuzz reached both the handlers and the validation


async def test_openapi_describes_every_route_of_the_provider_api(running_daemon: Any) -> None:
    daemon, client = running_daemon
    async with aiohttp.ClientSession() as http:
        p = await provider(daemon, client, http, "docs")
        async with http.get(p.base + "/api/provider/openapi.json",
                            headers={"Authorization": f"Bearer {p.token}"}) as resp:
            assert resp.status == 200
            doc = await resp.json()
        async with http.get(p.base + "/api/provider/openapi.json") as resp:
            assert resp.status == 401
    assert doc["openapi"].startswith("3.1")
    app = web.Application()
    add_provider_routes(app)  # what the daemon mounts on its TCP site
    served = set()
    for resource in app.router.resources():
        if isinstance(resource, web.PrefixedSubAppResource):
            served |= {r.canonical for r in resource._app.router.resources()}  # already prefixed
        else:
            served.add(resource.canonical)
    assert served == set(doc["paths"])
    report = doc["paths"]["/api/provider/telegram/tasks/report"]["post"]
    assert set(report["responses"]) >= {"200", "400", "401", "413", "415"}
    failed = doc["components"]["schemas"]["Failed"]
    assert failed["additionalProperties"] is False and "error_code" in failed["required"]


# --- end to end -----------------------------------------------------------------------------------------------------

E2E_CONFIG = """
[quotas]
generate_interval_seconds = 0.2
pace_seconds = 0
local_concurrency = 4
[limits]
flood_wait_jitter_seconds = 0
[simulator]
probe_fraction = 0.2
dead_fraction = 0.0
flood_wait_rate = 0.0
peer_flood_rate = 0.0
transient_rate = 0.0
"""


def cli_json(f: Fleet, *args: str) -> Any:
    result = f.cli(*args, "--json", "--socket", str(f.socket_path))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def cli_ok(f: Fleet, *args: str) -> str:
    result = f.cli(*args, "--socket", str(f.socket_path))
    assert result.returncode == 0, result.stderr
    return result.stdout


async def extend(p: Provider, task: LeasedTask) -> None:
    lease = {"task_id": task.task_id, "lease_token": task.lease_token}
    status, body = await p.post(ROUTES[2], {"leases": [lease, {**lease, "lease_token": "f" * 32}],
                                            "lease_seconds": 600})
    assert status == 200, body
    answer = msgspec.convert(body, ExtendResponse).results
    assert [(r.task_id, r.outcome) for r in answer] == [(task.task_id, "applied"), (task.task_id, "stale_lease")]
    assert answer[0].lease_expires_at is not None and answer[0].lease_expires_at > task.lease_expires_at
    assert answer[1].lease_expires_at is None


async def run_provider(p: Provider, quota_id: int, f: Fleet) -> tuple[list[dict[str, Any]], int | None]:
    """Pull and report until the quota is used up (bounded in time); the first task is reported as a
    FLOOD_WAIT_120, so its account must cool down. (tasks done, account that flooded)."""
    done: list[dict[str, Any]] = []
    flooded: int | None = None
    deadline = time.monotonic() + WAIT_SECONDS
    for _ in range(int(WAIT_SECONDS / 0.05)):
        status, body = await p.post(ROUTES[0], {"limit": 10})
        assert status == 200, body
        for task in msgspec.convert(body, PullResponse).tasks:
            assert task.order_id is None and task.subject_id == quota_id
            if flooded is None:
                report: dict[str, Any] = {"status": "failed", "error_code": "FLOOD_WAIT_120"}
                flooded = task.account_id
            else:
                report = {"status": "done", "result": {"views": 100 + task.post_id, "forwards": 1, "replies": 0,
                                                        "reactions": 2}}
                if not done:  # the first: its lease extended first (a wrong token extends nothing)
                    await extend(p, task)
                done.append({"task_id": task.task_id, "lease_token": task.lease_token, **report})
            status, answer = await p.post(ROUTES[1], {"task_id": task.task_id, "lease_token": task.lease_token,
                                                       **report})
            assert answer["results"] == [{"task_id": task.task_id, "outcome": "applied"}]
        quota = next(q for q in cli_json(f, "quotas", "list") if q["id"] == quota_id)
        if quota["quantity_left"] == 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    return done, flooded


async def test_end_to_end_a_provider_uses_up_a_quota_against_a_daemon_subprocess(daemon_store: str | None) -> None:
    """On both stores: the data dir's SQLite file and a PostgreSQL database."""
    with fleet(store=daemon_store) as f:
        f.config.write_text(E2E_CONFIG)
        daemon = f.start(accounts=12)
        await daemon.await_ready()
        status = cli_json(f, "status")
        token = f.cli("providers", "add", "acme", "--socket", str(f.socket_path)).stdout.strip()
        accounts = [a for a in cli_json(f, "accounts", "list") if not a["is_probe"]]
        mine = [str(a["id"]) for a in accounts]
        assert f"{len(mine)} of {len(mine)} account(s) now assigned to acme" in cli_ok(
            f, "accounts", "assign", *mine, "--executor", "acme")
        refused = f.cli("accounts", "assign", "1", "--executor", "nobody", "--socket", str(f.socket_path))
        assert refused.returncode == 2 and "no such provider" in refused.stderr and "Traceback" not in refused.stderr
        quota_id = int(cli_ok(f, "quotas", "add", "--name", "news", "--target", "@tgfleet_news", "--action",
                              "post_stats", "--last-n", "3", "--quantity", "5", "--interval", "1s",
                              "--expires-in", "1h").strip())
        async with aiohttp.ClientSession() as http:
            p = Provider(http, f"http://{status['http']}", token)
            done, flooded = await run_provider(p, quota_id, f)
            quota = next(q for q in cli_json(f, "quotas", "list") if q["id"] == quota_id)
            assert quota["quantity_left"] == 0 and len(done) == 5, (json.dumps(quota), daemon.log()[-2000:])
            status_code, again = await p.post(ROUTES[1], done[:2])  # the same reports again: nothing changes twice
            assert [r["outcome"] for r in again["results"]] == ["duplicate", "duplicate"]
            # a NUL in any text is a 400 on both stores (PostgreSQL could not store it), body and query alike
            code, nul = await p.post(ROUTES[1], [{**done[0], "error": "a\u0000b"}])
            assert code == 400 and nul["error"]["message"] == "body: text may not hold the NUL character (U+0000)"
            async with ControlClient(f.socket_path) as control:
                with pytest.raises(ApiError) as refused_query:
                    await control.request("GET", "/accounts", params={"q": "x\x00"})
                assert refused_query.value.status == 400 and "NUL" in str(refused_query.value)
                with pytest.raises(ApiError) as refused_body:
                    await control.request("POST", "/accounts/1/disable", body={"reason": "r\x00"})
                assert refused_body.value.status == 400
            async with http.get(p.base + "/metrics") as resp:
                metrics = await resp.text()
        quota = next(q for q in cli_json(f, "quotas", "list") if q["id"] == quota_id)
        assert quota["measurements"] == 5
        export = cli_ok(f, "quotas", "export", str(quota_id), "--format", "csv").strip().splitlines()
        assert len(export) == 6 and export[0].startswith("observed_at,post_id,views")
        by_id = {a["id"]: a for a in cli_json(f, "accounts", "list")}
        assert str(flooded) in mine and by_id[flooded]["state"] == "cooldown"
        assert by_id[flooded]["cooldown_reason"] == "FLOOD_WAIT"
        assert all(by_id[int(a)]["executor"] == "acme" for a in mine)
        assert 'tgfleet_reports_total{outcome="duplicate",status="done"} 2.0' in metrics
        assert 'tgfleet_reports_total{outcome="applied",status="failed"} 1.0' in metrics
        # given back to local, the accounts are served by the daemon's own executor, through the same path
        cli_ok(f, "accounts", "assign", *mine, "--executor", "local")
        cli_ok(f, "quotas", "add", "--name", "subs", "--target", "@tgfleet_markets", "--action", "channel_stats",
               "--orders", "2", "--interval", "1s", "--expires-in", "1h")
        deadline = time.monotonic() + WAIT_SECONDS
        for _ in range(int(WAIT_SECONDS / 0.1)):
            subs = next(q for q in cli_json(f, "quotas", "list") if q["name"] == "subs")
            if subs["orders_left"] == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert subs["orders_left"] == 0 and subs["measurements"] == 2
        assert await daemon.astop(signal.SIGTERM) == 0
