"""The bulk routes of a real daemon over its real Unix socket: ``POST /v1/accounts/batch`` and ``/v1/quotas/batch``
by ids and by filter, a dry run that writes nothing, and bad bodies answered 4xx with one line, never 5xx."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import pytest
from conftest import FLEET_SIZE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store import backdoor

from tgdaemon.control.client import ControlClient
from tgdaemon.httpjson import MAX_BODY


@pytest.fixture
async def http(running_daemon):
    daemon, _ = running_daemon
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(daemon.runtime.socket_path)),
                                     timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


async def post(http: aiohttp.ClientSession, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
    async with http.post(f"http://tgdaemon/v1{path}", **({"json": body} if body is not None else {}),
                         **kwargs) as resp:
        raw = await resp.read()
        assert resp.content_type == "application/json", (resp.status, raw[:200])
        return resp.status, json.loads(raw)


async def states(client: ControlClient) -> dict[int, str]:
    return {a["id"]: a["state"] for a in (await client.accounts(limit=1000))["accounts"]}


def one_line_error(status: int, data: Any, expected: int) -> str:
    assert status == expected, data
    assert set(data) == {"error"}, data
    message = data["error"]["message"]
    assert message and "\n" not in message
    return str(message)


async def test_disable_and_enable_by_ids_in_one_request_forget_the_disabled_clients(running_daemon, http) -> None:
    daemon, client = running_daemon
    forgotten: list[int] = []
    let_go = daemon.runtime.gateway.let_go

    async def spy(ids: list[int]) -> None:
        forgotten.extend(ids)
        await let_go(ids)

    daemon.runtime.gateway.let_go = spy
    status, data = await post(http, "/accounts/batch", {"action": "disable", "ids": [5, 3, 4, 4], "reason": " bulk "})
    assert status == 200, data
    assert {k: data[k] for k in ("action", "dry_run", "matched", "changed", "unchanged", "refused", "tasks")} == {
        "action": "disable", "dry_run": False, "matched": 3, "changed": 3, "unchanged": 0, "refused": 0, "tasks": 0}
    assert sorted(forgotten) == [3, 4, 5]
    for account_id in (3, 4, 5):
        account = await client.account(account_id)
        assert (account["state"], account["disabled_reason"]) == ("disabled", "bulk")
        assert [e["kind"] for e in await client.events(account_id=account_id)][:1] == ["account.disabled"]
    status, data = await post(http, "/accounts/batch", {"action": "disable", "ids": [3, 6], "reason": "again"})
    assert (data["changed"], data["unchanged"]) == (1, 1)
    assert (await client.account(3))["disabled_reason"] == "bulk"  # an already disabled one keeps its reason
    status, data = await post(http, "/accounts/batch", {"action": "enable", "ids": [3, 4, 5, 6, 7]})
    assert (status, data["changed"], data["unchanged"]) == (200, 4, 1)
    assert "disabled" not in (await states(client)).values()


async def test_a_filter_acts_on_what_the_listing_shows_with_it_and_a_dry_run_writes_nothing(running_daemon,
                                                                                            http) -> None:
    _, client = running_daemon
    listed = [a["id"] for a in (await client.accounts(q="sim-000", limit=1000))["accounts"]]
    assert 1 <= len(listed) < FLEET_SIZE
    before = await client.events(limit=1000)
    status, dry = await post(http, "/accounts/batch", {"action": "disable", "filter": {"q": "sim-000"},
                                                        "reason": "r", "dry_run": True})
    assert status == 200 and dry["dry_run"] is True
    assert [t["id"] for t in dry["would_change"]] == listed and dry["changed"] == dry["matched"] == len(listed)
    assert all(t["label"].startswith("sim-000") for t in dry["would_change"])
    assert "disabled" not in (await states(client)).values() and await client.events(limit=1000) == before

    status, data = await post(http, "/accounts/batch", {"action": "disable", "filter": {"q": "sim-000"},
                                                         "reason": "by filter"})
    assert (status, data["matched"], data["changed"]) == (200, len(listed), len(listed))
    shown = await states(client)
    assert sorted(i for i, s in shown.items() if s == "disabled") == listed
    # the state filter: exactly the disabled ones come back
    status, dry = await post(http, "/accounts/batch", {"action": "enable", "filter": {"state": "disabled"},
                                                        "dry_run": True})
    assert [t["id"] for t in dry["would_change"]] == listed
    status, data = await post(http, "/accounts/batch", {"action": "enable", "filter": {"state": "disabled"}})
    assert data["changed"] == len(listed) and "disabled" not in (await states(client)).values()
    # an empty filter is every account; a dry run says how many without a word written
    status, dry = await post(http, "/accounts/batch", {"action": "assign", "filter": {}, "executor": "local",
                                                        "dry_run": True})
    assert (dry["matched"], dry["changed"], dry["unchanged"]) == (FLEET_SIZE, 0, FLEET_SIZE)


async def test_retry_and_assign(running_daemon, http) -> None:
    _, client = running_daemon
    status, dry = await post(http, "/accounts/batch", {"action": "retry", "ids": [1, 2, 3], "dry_run": True})
    assert status == 200 and dry["matched"] == 3
    status, data = await post(http, "/accounts/batch", {"action": "retry", "ids": [1, 2, 3]})
    assert status == 200 and data["matched"] == 3 and data["changed"] + data["unchanged"] == 3
    status, data = await post(http, "/providers", {"name": "acme"})
    assert status == 201
    status, data = await post(http, "/accounts/batch", {"action": "assign", "ids": [8, 9], "executor": "acme"})
    assert (status, data["changed"]) == (200, 2)
    assert {(await client.account(i))["executor"] for i in (8, 9)} == {"acme"}
    status, data = await post(http, "/accounts/batch", {"action": "assign", "ids": [8], "executor": "nobody"})
    assert "no such provider" in one_line_error(status, data, 400)


async def test_quotas_pause_and_resume_by_ids_and_filter_refusing_the_expired(running_daemon, http) -> None:
    daemon, client = running_daemon
    ids = []
    for name in ("news-a", "news-b", "markets"):
        status, quota = await post(http, "/quotas", {"name": name, "target": "@tgfleet_news", "action": "post_stats",
                                                     "quantity": 5, "expires_in_seconds": 86400})
        assert status == 201, quota
        ids.append(quota["id"])
    await backdoor.update(daemon.runtime.store, "quotas", {"id": ids[2]}, expires_at=time.time() - 60)
    status, dry = await post(http, "/quotas/batch", {"action": "pause", "filter": {"q": "NEWS-"}, "dry_run": True})
    assert [t["id"] for t in dry["would_change"]] == ids[:2] and dry["refused"] == 0
    assert not any(q["paused"] for q in await client.quotas())
    status, data = await post(http, "/quotas/batch", {"action": "pause", "ids": ids})
    assert (status, data["matched"], data["changed"], data["refused"]) == (200, 3, 2, 1)
    [refusal] = data["refusals"]
    assert refusal["id"] == ids[2] and "nothing to pause" in refusal["reason"]
    status, data = await post(http, "/quotas/batch", {"action": "resume", "filter": {"state": "paused"}})
    assert (data["matched"], data["changed"]) == (2, 2)
    assert not any(q["paused"] for q in await client.quotas())
    status, data = await post(http, "/quotas/batch", {"action": "pause", "ids": [ids[0], 99999]})
    assert "quota 99999: no such quota" == one_line_error(status, data, 404)
    assert not any(q["paused"] for q in await client.quotas())


BAD_ACCOUNT_BODIES = [
    {}, {"action": "explode", "ids": [1]}, {"action": "disable", "ids": [1]}, {"action": "disable", "ids": [1],
                                                                              "reason": "   "},
    {"action": "enable"}, {"action": "enable", "ids": [1], "filter": {}}, {"action": "enable", "ids": []},
    {"action": "enable", "ids": [0]}, {"action": "enable", "ids": ["1"]}, {"action": "enable", "filter": {"state": "x"}},
    {"action": "enable", "filter": {"colour": "red"}}, {"action": "enable", "ids": [1], "force": True},
    {"action": "enable", "ids": [1], "reason": "why"}, {"action": "disable", "ids": [1], "reason": "r",
                                                         "executor": "local"},
    {"action": "assign", "ids": [1]}, {"action": "enable", "ids": [1], "dry_run": "yes"}, [], "enable",
    {"action": "enable", "filter": {"q": "x" * 201}},
]
BAD_QUOTA_BODIES = [{}, {"action": "stop", "ids": [1]}, {"action": "pause"}, {"action": "pause", "filter": {"state": "x"}},
                    {"action": "pause", "ids": [1], "filter": {}}, {"action": "pause", "filter": {"name": "x"}}]


async def test_bad_bodies_are_400_with_one_line_and_change_nothing(running_daemon, http) -> None:
    _, client = running_daemon
    before = await client.events(limit=1000)
    for path, bodies in (("/accounts/batch", BAD_ACCOUNT_BODIES), ("/quotas/batch", BAD_QUOTA_BODIES)):
        for body in bodies:
            status, data = await post(http, path, body)
            one_line_error(status, data, 400)
    for raw in (b"", b"{", b'{"action": "enable", "ids": [1]} x'):
        status, data = await post(http, "/accounts/batch", data=raw, headers={"Content-Type": "application/json"})
        one_line_error(status, data, 400)
    status, data = await post(http, "/accounts/batch", data=b'{"action": "enable", "ids": [1]}',
                              headers={"Content-Type": "text/plain"})
    one_line_error(status, data, 415)
    status, data = await post(http, "/accounts/batch", {"action": "enable", "ids": [1, 2, 99999]})
    assert one_line_error(status, data, 404) == "account 99999: no such account"
    status, data = await post(http, "/accounts/batch", {"action": "disable", "ids": [1, 99999], "reason": "r"})
    one_line_error(status, data, 404)
    huge = json.dumps({"action": "enable", "ids": list(range(1_000_000, 1_000_000 + MAX_BODY // 7))}).encode()
    assert len(huge) > MAX_BODY
    status, data = await post(http, "/accounts/batch", data=huge, headers={"Content-Type": "application/json"})
    assert one_line_error(status, data, 413)
    assert "disabled" not in (await states(client)).values() and await client.events(limit=1000) == before


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.fixed_dictionaries({}, optional={
    "action": st.sampled_from(["disable", "enable", "retry", "assign", "pause", "x"]),
    "ids": st.lists(st.integers(-3, 60), max_size=4), "filter": st.dictionaries(
        st.sampled_from(["state", "q", "health", "x"]), st.one_of(st.none(), st.text(max_size=5)), max_size=2),
    "reason": st.one_of(st.none(), st.text(max_size=5)), "executor": st.sampled_from(["local", "nobody"]),
    "dry_run": st.just(True)}))
async def test_random_bodies_are_never_5xx(http, body: dict[str, Any]) -> None:
    for path in ("/accounts/batch", "/quotas/batch"):
        status, data = await post(http, path, body)
        assert status in (200, 400, 404), (path, body, status, data)
        if status != 200:
            one_line_error(status, data, status)
