"""The tasks view's control API (issue 15) over a real daemon's real Unix socket: ``GET /tasks`` with its filters
and per-queue counts, ``GET /tasks/{kind}/{id}`` with the attempts, ``POST /tasks/retry`` (dry run, by ids, by
filter, refusals) and ``GET /pulse``; every bad query a 400 of one line.

The daemon runs setup on the simulator with a photo configured at a path that does not exist: every account's
``set_photo_jpg`` fails at its first attempt (one attempt allowed), deterministically, while the fast tasks
succeed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from conftest import FLEET_SIZE

from tgdaemon import wire
from tgdaemon.control.client import ControlClient
from tgdaemon.store import TaskFilter

WAIT = 20.0


def failing_setup(tmp_path: Path) -> dict[str, dict[str, Any]]:
    return {"simulator": {"dead_fraction": 0, "flood_wait_rate": 0, "peer_flood_rate": 0, "transient_rate": 0},
            "setup": {"enabled": True, "dispatch_interval_seconds": 3600,
                      "media": {"default_jpg_path": str(tmp_path / "missing.jpg")},
                      "retry": {"max_attempts": 1, "backoff_seconds": [0]}}}


async def settled(client: ControlClient) -> wire.TaskList:
    """Until every media task has failed and no setup task is waiting or running (bounded)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        listing = await client.call("GET", "/tasks", wire.TaskList, params={"kind": "setup", "limit": 10_000})
        media = [t for t in listing.tasks if t.queue == "media"]
        if media and all(t.status == "failed" for t in media) and all(
                t.status in ("done", "failed") for t in listing.tasks):
            return listing
        await asyncio.sleep(0.2)
    raise AssertionError(f"setup did not settle in {WAIT:.0f} s: "
                         f"{sorted({(t.task_type, t.status, t.blocked_by) for t in listing.tasks})}")


@pytest.fixture
async def failing(daemon_factory: Any, tmp_path: Path) -> Any:
    async with daemon_factory(**failing_setup(tmp_path)) as (daemon, client):
        await settled(client)
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(daemon.runtime.socket_path)),
                                         timeout=aiohttp.ClientTimeout(total=10)) as http:
            yield daemon, client, http


async def raw(http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with http.request(method, f"http://tgdaemon/v1{path}", **kwargs) as resp:
        return resp.status, await resp.json()


async def test_the_listing_filters_and_counts_per_queue(failing: Any) -> None:
    _, client, _ = failing
    everything = await client.call("GET", "/tasks", wire.TaskList, params={"limit": 10_000})
    setup = [t for t in everything.tasks if t.kind == "setup"]
    failed = await client.call("GET", "/tasks", wire.TaskList, params={"status": "failed", "limit": 10_000})
    assert failed.tasks and {(t.kind, t.status, t.task_type, t.queue) for t in failed.tasks} == {
        ("setup", "failed", "set_photo_jpg", "media")}
    assert len(failed.tasks) < len(setup)
    one = failed.tasks[0]
    assert one.key == f"setup:{one.id}" and one.attempts == 1 and one.last_error_code and one.last_error
    assert one.created_at and one.updated_at and one.blocked_by is None
    media = await client.call("GET", "/tasks", wire.TaskList, params={"queue": "media", "limit": 10_000})
    assert {t.task_type for t in media.tasks} == {"set_photo_jpg"}
    fast = await client.call("GET", "/tasks", wire.TaskList, params={"queue": "fast", "type": "update_name"})
    assert fast.tasks and {t.task_type for t in fast.tasks} == {"update_name"}
    mine = await client.call("GET", "/tasks", wire.TaskList, params={"account_id": one.account_id})
    assert {t.account_id for t in mine.tasks} == {one.account_id}
    # The header's counts are the fleet's, whatever the filter.
    assert mine.counts == everything.counts
    assert everything.counts["media"] == {"failed": len(failed.tasks)}
    assert sum(everything.counts["fast"].values()) == len([t for t in setup if t.queue == "fast"])
    # Pulled tasks of a queue of the other kind: none, not an error.
    assert (await client.call("GET", "/tasks", wire.TaskList, params={"queue": "pulled:local",
                                                                      "kind": "setup"})).tasks == []


@pytest.mark.parametrize(("query", "says"), [
    ({"status": "lost"}, "status"),
    ({"queue": "slow"}, "queue: expected fast, media or pulled:EXECUTOR, got 'slow'"),
    ({"queue": "pulled:"}, "queue"),
    ({"type": "dance"}, "type: no such task type 'dance'"),
    ({"kind": "both"}, "kind"),
    ({"limit": "0"}, "limit"),
    ({"account_id": "x"}, "account_id"),
    ({"color": "red"}, "color"),
])
async def test_a_bad_listing_query_is_a_400_of_one_line(failing: Any, query: dict[str, str], says: str) -> None:
    _, _, http = failing
    status, body = await raw(http, "GET", "/tasks", params=query)
    assert status == 400, body
    assert says in body["error"]["message"] and "\n" not in body["error"]["message"]


async def test_an_unknown_account_or_task_is_a_404(failing: Any) -> None:
    _, _, http = failing
    status, body = await raw(http, "GET", "/tasks", params={"account_id": "99999"})
    assert (status, body["error"]["message"]) == (404, "account 99999: no such account")
    status, body = await raw(http, "GET", "/tasks/setup/99999")
    assert (status, body["error"]["message"]) == (404, "task setup:99999: no such task")
    status, body = await raw(http, "GET", "/tasks/queued/1")
    assert status == 400 and "expected KIND:ID" in body["error"]["message"]


async def test_a_task_with_its_attempts(failing: Any) -> None:
    _, client, _ = failing
    [one, *_] = (await client.call("GET", "/tasks", wire.TaskList, params={"status": "failed"})).tasks
    detail = await client.call("GET", f"/tasks/setup/{one.id}", wire.TaskDetail)
    assert detail.task.key == one.key and detail.attempts_kept == 20
    [attempt] = detail.attempts
    assert (attempt.attempt, attempt.outcome, attempt.error_code) == (1, "failed", one.last_error_code)
    assert attempt.started_at and attempt.ended_at and attempt.seconds is not None and attempt.seconds >= 0
    assert attempt.node  # the node that owns the account ran it


async def test_retry_all_failed_dry_run_then_for_real(failing: Any) -> None:
    daemon, client, http = failing
    failed = (await client.call("GET", "/tasks", wire.TaskList, params={"status": "failed",
                                                                        "limit": 10_000})).tasks
    dry = await client.call("POST", "/tasks/retry", wire.TasksRetried, body={"status": "failed", "dry_run": True})
    assert (dry.matched, dry.retried, dry.refused_count, dry.dry_run) == (len(failed), len(failed), 0, True)
    assert len((await client.call("GET", "/tasks", wire.TaskList, params={"status": "failed"})).tasks) == len(failed)
    done = await client.call("POST", "/tasks/retry", wire.TasksRetried, body={"status": "failed", "queue": "media"})
    assert (done.matched, done.retried, done.dry_run) == (len(failed), len(failed), False)
    # Due again (the scheduler takes them at once and they fail again: one more attempt each).
    rows = await daemon.runtime.store.list_tasks(TaskFilter(kind="setup", types=("set_photo_jpg",)))
    assert all(r["status"] in ("retry", "running", "failed") for r in rows)
    await settled(client)
    detail = await client.call("GET", f"/tasks/setup/{failed[0].id}", wire.TaskDetail)
    assert [a.outcome for a in detail.attempts] == ["failed", "failed"]
    assert [a.attempt for a in detail.attempts] == [1, 1]  # the operator's retry starts the count again
    # By ids: a done task is refused with its reason.
    done_task = next(t for t in (await client.call("GET", "/tasks", wire.TaskList,
                                                   params={"status": "done"})).tasks)
    out = await client.call("POST", "/tasks/retry", wire.TasksRetried,
                            body={"ids": [done_task.key, failed[0].key], "dry_run": True})
    assert (out.matched, out.retried, out.refused_count) == (2, 1, 1)
    assert out.refused == [wire.TaskRefusal(task=done_task.key,
                                            reason="done: only a failed or waiting setup task is retried")]


@pytest.mark.parametrize(("body", "says"), [
    ({}, "retry needs ids or a filter"),
    ({"kind": "setup"}, "retry needs ids or a filter"),
    ({"dry_run": True}, "retry needs ids or a filter"),
    ({"ids": []}, "ids: empty"),
    ({"ids": ["setup:1"], "status": "failed"}, "ids: give ids or a filter, not both"),
    ({"ids": ["12"]}, "task '12': expected KIND:ID"),
    ({"ids": ["pulled:-1"]}, "expected KIND:ID"),
    ({"status": "failed", "queue": "slow"}, "queue: expected"),
    ({"status": "failed", "dry_run": "yes"}, "dry_run"),
])
async def test_a_bad_retry_is_a_400_and_changes_nothing(failing: Any, body: dict[str, Any], says: str) -> None:
    _, client, http = failing
    before = (await client.call("GET", "/tasks", wire.TaskList)).counts
    status, answer = await raw(http, "POST", "/tasks/retry", json=body)
    assert status == 400, answer
    assert says in answer["error"]["message"] and "\n" not in answer["error"]["message"]
    assert (await client.call("GET", "/tasks", wire.TaskList)).counts == before


async def test_the_pulse_has_sixty_minutes_per_queue_the_current_one_last(failing: Any) -> None:
    _, client, http = failing
    raw_pulse = await client.request("GET", "/pulse")
    assert set(raw_pulse) == {"at", "minutes", "queues"} and raw_pulse["minutes"] == 60
    pulse = msgspec.convert(raw_pulse, wire.Pulse)
    assert {"fast", "media"} <= set(pulse.queues)
    assert all(len(q.done) == 60 and len(q.failed) == 60 for q in pulse.queues.values())
    failed = (await client.call("GET", "/tasks", wire.TaskList, params={"status": "failed"})).tasks
    media, fast = pulse.queues["media"], pulse.queues["fast"]
    # Everything ended within the last minute or two: in the newest entries.
    assert sum(media.failed[-2:]) == sum(media.failed) == len(failed) and sum(media.done) == 0
    assert sum(fast.done) >= FLEET_SIZE // 2 and sum(fast.failed) == 0
    short = await client.call("GET", "/pulse", wire.Pulse, params={"minutes": 5})
    assert short.minutes == 5 and all(len(q.done) == 5 for q in short.queues.values())
    for bad in ({"minutes": "0"}, {"minutes": "121"}, {"minutes": "x"}, {"since": "1"}):
        status, body = await raw(http, "GET", "/pulse", params=bad)
        assert status == 400 and "\n" not in body["error"]["message"], (bad, body)
