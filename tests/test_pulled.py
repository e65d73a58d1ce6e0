"""The local executor, in-process end to end on a real SQLite store and the ``Simulator``: generation, its
pulls and reads, reports, measurements. The rules of pulled tasks themselves (design 5 and 6) are tested
on both drivers in tests/store/test_pulled.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from store import backdoor
from store.world import newest_posts, world

from tgdaemon.quotas.executor import LocalExecutor
from tgdaemon.store import Store

E2E_TIMEOUT = 10.0


@pytest.fixture
async def executor_task(store: Store) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Holds the executor's task so it is cancelled even when the test fails."""
    running: list[asyncio.Task[None]] = []
    yield running
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


async def test_local_executor_runs_a_quota_until_used_up(store: Store,
                                                         executor_task: list[asyncio.Task[None]]) -> None:
    """In-process, end to end: generation, the local executor's pulls and reads, reports, measurements."""
    w = await world(store, workers=4)
    # Skip the newest post: one published this very second has no views yet.
    posts = (await newest_posts(w.sim, 4))[1:]
    qid = await w.add_quota(action="post_stats", quantity=6, posts=posts, interval=0)
    executor = LocalExecutor(store, w.sim, w.leases, concurrency=2)
    executor_task.append(asyncio.create_task(executor.run()))
    async with asyncio.timeout(E2E_TIMEOUT):
        while (await w.quota(qid))["quantity_left"] > 0:
            await w.tick()
            await asyncio.sleep(0.01)
    measured = await backdoor.rows(store, "measurements", quota_id=qid)
    assert len(measured) == 6
    assert all(m["views"] > 0 and m["post_id"] in posts for m in measured)
    tasks = await w.tasks()
    assert [t["status"] for t in tasks] == ["done"] * 6 and {t["leased_by"] for t in tasks} == {"local"}
    assert len({(t["post_id"], t["account_id"]) for t in tasks}) == 6  # no (post, account) pair twice
    assert (await w.tick()).tasks == 0
