"""The store watch on a real PostgreSQL store whose server is stopped and started again under it.

Its clock is the test's, so that "a minute later" needs no minute: the reminder's period is checked by
moving the clock between probes. The probes themselves run at the watch's real (short) intervals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from itertools import islice
from typing import Any

import pgtest
import pytest

from tgdaemon.lifecycle import storewatch
from tgdaemon.lifecycle.storewatch import StoreWatch, backoff
from tgdaemon.store.postgres.core import PostgresCore
from tgdaemon.wire import StoreStatus

STEP = 0.02
WAIT = 30.0


def test_backoff_doubles_up_to_its_bound() -> None:
    assert list(islice(backoff(0.5, 10.0), 8)) == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert max(islice(backoff(storewatch.FIRST_SECONDS, storewatch.LONGEST_SECONDS), 1000)) == 10.0


@pytest.fixture(scope="module")
def restartable() -> Iterator[pgtest.Restartable]:
    with pgtest.restartable_server() as server:
        yield server


@pytest.fixture
async def store(restartable: pgtest.Restartable) -> AsyncIterator[PostgresCore]:
    admin = restartable.admin
    name = admin.create()
    store = await PostgresCore.open(admin.url(name))
    try:
        yield store
    finally:
        await store.close()
        admin.drop(name)


async def until(check: Callable[[], object], what: str) -> None:
    for _ in range(int(WAIT / STEP)):
        if check():
            return
        await asyncio.sleep(STEP)
    pytest.fail(f"not within {WAIT:.0f} s: {what}", pytrace=False)


async def test_one_line_per_change_a_reminder_per_period_and_a_kept_loop(
        restartable: pgtest.Restartable, store: PostgresCore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = [0.0]
    watch = StoreWatch(store, first=0.01, longest=0.05, remind=60.0, clock=lambda: clock[0])  # type: ignore[arg-type]
    told: list[StoreStatus] = []
    watch.on_change = told.append
    watch.attach()
    runs: list[int] = []

    async def loop() -> None:  # a side task that writes on and on, as the reaper or the generator does
        runs.append(len(runs) + 1)
        for _ in range(100_000):
            async with store.tx() as tx:
                await tx.set_meta("run", str(len(runs)))
            await asyncio.sleep(STEP)

    kept = asyncio.create_task(watch.keep(loop))
    probing = asyncio.create_task(watch.run())
    tasks: list[asyncio.Task[Any]] = [kept, probing]
    try:
        await until(lambda: runs, "the loop running")
        await asyncio.to_thread(restartable.stop)
        await until(lambda: watch.down is not None, "the watch saying the store is down")
        assert not watch.up.is_set() and store.down == watch.down
        await until(lambda: watch.probes >= 5, "five probes")
        assert runs == [1] and not kept.done()  # waiting: neither ended nor started again while down

        for at, reminders in ((30.0, 0), (61.0, 1), (100.0, 1), (125.0, 2)):  # once per 60 s at most
            clock[0] = at
            probes = watch.probes
            await until(lambda: watch.probes >= probes + 2, f"two more probes at {at}")
            said = [r for r in caplog.records if "still out of reach" in r.getMessage()]
            assert len(said) == reminders, [r.getMessage() for r in said]

        await asyncio.to_thread(restartable.start)
        await until(lambda: watch.up.is_set(), "the watch saying the store is back")
        await until(lambda: runs == [1, 2], "the loop started again")
        async with store.tx() as tx:
            assert await tx.fetchval("SELECT value FROM meta WHERE key = 'run'") == "2"  # and working
        assert not kept.done() and not probing.done()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    ours = [(r.levelname, r.getMessage()) for r in caplog.records if r.name.startswith("tgdaemon")]
    assert not any(r.exc_info for r in caplog.records)
    assert [level for level, _ in ours] == ["WARNING", "WARNING", "WARNING", "INFO"], ours
    assert ours[0][1].startswith(f"the database cannot be reached ({told[0].down}); taking no work")
    assert ours[1][1].startswith("the database is still out of reach after 1m 1s and ")
    assert ours[2][1].startswith("the database is still out of reach after 2m 5s and ")
    assert ours[3][1] == "the database is back after 2m 5s; taking work again"
    assert [t.down is not None for t in told] == [True, False]
    assert told[0].down_since is not None and told[1].down_since is None
