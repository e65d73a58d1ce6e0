"""Quotas so far: add, list, pause and resume, export, and inspection by a probe account.

The real daemon runs in-process on the simulator; everything goes through the
real control socket, as the CLI and the dashboard use it. The inspector on the
store alone (no probe ready, a probe in a flood wait) is in tests/store/test_quotas.py.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import msgspec
import pytest

from tgdaemon.errors import ApiError
from tgdaemon.timeutil import parse_duration

WAIT_SECONDS = 10.0


def body(**overrides: Any) -> dict[str, Any]:
    return {"name": "news", "target": "@tgfleet_news", "action": "post_stats", "quantity": 100,
            "expires_in_seconds": 86400, **overrides}


async def until(check: Any, timeout: float = WAIT_SECONDS) -> Any:
    """Poll a coroutine function until it returns something truthy; bounded in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"not true within {timeout} s")


async def test_add_inspects_and_lists(running_daemon: Any) -> None:
    daemon, client = running_daemon
    quota = await client.request("POST", "/quotas", body=body())
    assert quota["quantity_total"] == 100 and quota["quantity_left"] == 100 and quota["orders_left"] is None
    assert quota["inspection_ok"] is None and quota["paused"] is False

    async def inspected() -> Any:
        [q] = (await client.request("GET", "/quotas"))["quotas"]
        return q if q["inspection_ok"] is not None else None

    q = await until(inspected)
    assert q["inspection_ok"] is True and q["title"] and q["peer_id"] and q["next_run_at"] is not None
    events = await client.events(limit=50)
    assert any(e["kind"] == "quota.inspected" and e["quota_id"] == q["id"] for e in events)


@pytest.mark.parametrize(("target", "code"), [
    ("https://t.me/tgfleet_private", "CHANNEL_PRIVATE"),
    ("@nosuchchannel_here", "USERNAME_NOT_OCCUPIED"),
    ("https://t.me/+notaninvitehash", "INVITE_HASH_EXPIRED"),
])
async def test_a_bad_target_fails_inspection_with_its_code(running_daemon: Any, target: str, code: str) -> None:
    _, client = running_daemon
    quota = await client.request("POST", "/quotas", body=body(target=target, action="channel_stats"))

    async def failed() -> Any:
        q = next(q for q in (await client.request("GET", "/quotas"))["quotas"] if q["id"] == quota["id"])
        return q if q["inspection_ok"] is False else None

    q = await until(failed)
    assert q["inspection_error"] == code and q["last_error"] == code


async def test_only_observing_actions_and_sane_bodies_are_accepted(running_daemon: Any) -> None:
    _, client = running_daemon
    for bad, code, text in (
        (body(action="views"), "action_not_allowed", "post_stats or channel_stats"),
        (body(action="reactions"), "action_not_allowed", "only observes"),
        (body(quantity=None), "invalid_body", "exactly one of quantity and orders"),
        (body(orders=5), "invalid_body", "exactly one"),
        (body(target="not a link!"), "invalid_target", "not a public link"),
        (body(expires_in_seconds=0), "invalid_body", "expires_in_seconds"),
        (body(extra=1), "invalid_body", "extra"),
    ):
        with pytest.raises(ApiError) as err:
            await client.request("POST", "/quotas", body={k: v for k, v in bad.items() if v is not None})
        assert err.value.status == 400 and err.value.code == code and text in str(err.value), (bad, err.value)
    assert (await client.request("GET", "/quotas"))["quotas"] == []


async def test_pause_resume_and_export(running_daemon: Any) -> None:
    daemon, client = running_daemon
    quota = await client.request("POST", "/quotas", body=body(orders=3, quantity=None))
    qid = quota["id"]
    assert (await client.request("POST", f"/quotas/{qid}/pause"))["changed"] is True
    again = await client.request("POST", f"/quotas/{qid}/pause")
    assert again["changed"] is False and again["quota"]["paused"] is True
    assert (await client.request("POST", f"/quotas/{qid}/resume"))["quota"]["paused"] is False
    with pytest.raises(ApiError) as err:
        await client.request("POST", "/quotas/999/pause")
    assert err.value.status == 404

    store = daemon.runtime.store
    async with store.tx() as tx:
        await tx.execute("INSERT INTO measurements (quota_id, post_id, observed_at, views, forwards, replies,"
                         " reactions) VALUES (?, 7, 1700000000, 120, 3, 4, 9)", (qid,))
    csv_text = await client.export_measurements(qid, "csv")
    assert csv_text.splitlines() == ["observed_at,post_id,views,forwards,replies,reactions,subscribers,task_id",
                                     "2023-11-14T22:13:20Z,7,120,3,4,9,,"]
    data = await client.request("GET", f"/quotas/{qid}/measurements", params={"format": "json"})
    assert data["measurements"][0]["views"] == 120

    async with store.tx() as tx:  # later ones: a limit keeps the latest, still oldest first
        await tx.conn.executemany("INSERT INTO measurements (quota_id, post_id, observed_at, views) VALUES (?, 7, ?, ?)",
                                  [(qid, 1700000000 + i * 60, 120 + i) for i in range(1, 5)])
    latest = await client.measurements(qid, limit=2)
    assert [m["views"] for m in latest] == [123, 124]
    with pytest.raises(ApiError) as err:
        await client.request("GET", f"/quotas/{qid}/measurements", params={"limit": "0"})
    assert err.value.status == 400 and "limit" in str(err.value)


async def test_an_expired_quota_lists_as_expired_and_pause_or_resume_is_a_409_that_changes_nothing(
        running_daemon: Any) -> None:
    daemon, client = running_daemon
    qid = (await client.request("POST", "/quotas", body=body()))["id"]
    assert (await client.request("GET", "/quotas"))["quotas"][0]["state"] == "active"
    async with daemon.runtime.store.tx() as tx:  # its time ran out an hour ago
        await tx.execute("UPDATE quotas SET expires_at = ? WHERE id = ?", (1_700_000_000, qid))
    [listed] = (await client.request("GET", "/quotas"))["quotas"]
    assert (listed["state"], listed["paused"]) == ("expired", False)
    for action in ("pause", "resume"):
        with pytest.raises(ApiError) as err:
            await client.request("POST", f"/quotas/{qid}/{action}")
        assert (err.value.status, err.value.code, str(err.value)) == (
            409, "conflict", f"quota {qid} expired at 2023-11-14T22:13:20Z: there is nothing to {action}")
    [after] = (await client.request("GET", "/quotas"))["quotas"]
    assert (after["state"], after["paused"]) == ("expired", False)
    kinds = {e["kind"] for e in await daemon.runtime.store.events_after(0, 100)}
    assert not kinds & {"quota.paused", "quota.resumed"}, kinds


async def test_export_streams_every_row_in_order_a_page_at_a_time(running_daemon: Any) -> None:
    """An export of more rows than a page is streamed (no Content-Length: chunked), whole and in order,
    and a limit that spans pages keeps exactly the latest N; a missing quota is still a 404."""
    daemon, client = running_daemon
    qid = (await client.request("POST", "/quotas", body=body()))["id"]
    rows = 12_345
    async with daemon.runtime.store.tx() as tx:  # two at the same second: order by id within it
        await tx.conn.executemany("INSERT INTO measurements (quota_id, post_id, observed_at, views) VALUES (?, 7, ?, ?)",
                                  [(qid, 1_700_000_000 + i // 2, i) for i in range(rows)])
    connector = aiohttp.UnixConnector(path=str(daemon.cfg.socket_path()))
    async with aiohttp.ClientSession(connector=connector) as http:
        for fmt in ("json", "csv"):
            async with http.get(f"http://d/v1/quotas/{qid}/measurements", params={"format": fmt}) as resp:
                assert resp.status == 200 and "Content-Length" not in resp.headers
                raw = await resp.read()
            if fmt == "json":
                views = [m["views"] for m in msgspec.json.decode(raw)["measurements"]]
            else:
                lines = raw.decode().splitlines()
                assert lines[0] == "observed_at,post_id,views,forwards,replies,reactions,subscribers,task_id"
                views = [int(line.split(",")[2]) for line in lines[1:]]
            assert views == list(range(rows)), fmt
        async with http.get(f"http://d/v1/quotas/{qid + 1}/measurements") as resp:
            assert resp.status == 404
    latest = await client.measurements(qid, limit=7_001)
    assert [m["views"] for m in latest] == list(range(rows - 7_001, rows))


async def test_quota_changes_reach_the_stream(running_daemon: Any) -> None:
    _, client = running_daemon
    stream = client.watch()
    snapshot = await anext(stream)
    assert snapshot["type"] == "snapshot"
    await client.request("POST", "/quotas", body=body())
    kinds: list[str] = []
    async with asyncio.timeout(WAIT_SECONDS):
        async for msg in stream:
            if msg.get("kind") == "quota":
                kinds.append(msg["data"]["name"])
                if msg["data"]["inspection_ok"] is not None:
                    break
    assert kinds[0] == "news" and len(kinds) >= 2  # added, then inspected


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("2h", 7200), ("7d", 604800),
                                               ("1w", 604800), ("1.5h", 5400), ("1h30m", 5400), ("2d12h", 216000),
                                               ("1H30M", 5400), (" 90s ", 90)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "-5m", "0", "0s", "5y", "999999w", "90", "1h30", "1h 30m", "h", "1hh"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
