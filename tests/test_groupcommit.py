"""Group commit: concurrent writes share batches, and no waiter is left hanging whatever the writer does."""

from __future__ import annotations

import asyncio

import pytest

from tgdaemon.groupcommit import GroupCommit


async def test_writes_arriving_during_a_batch_share_the_next_one() -> None:
    batches: list[list[int]] = []
    gate = asyncio.Event()

    async def write(items: list[int]) -> list[int]:
        batches.append(items)
        if len(batches) == 1:
            await gate.wait()  # the first batch is slow: the rest pile up behind it
        return [i * 10 for i in items]

    commit: GroupCommit[int, int] = GroupCommit(write, "test")
    first = asyncio.create_task(commit(1))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(commit(i)) for i in range(2, 6)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.wait_for(asyncio.gather(first, *rest), 5) == [10, 20, 30, 40, 50]
    assert batches == [[1], [2, 3, 4, 5]]


async def test_a_failing_or_wrong_sized_write_reaches_every_waiter() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    commit: GroupCommit[int, int] = GroupCommit(short, "test")
    results = await asyncio.wait_for(asyncio.gather(commit(1), commit(2), return_exceptions=True), 5)
    assert all(isinstance(r, RuntimeError) and "1 results for 2 writes" in str(r) for r in results)


async def test_a_cancelled_flusher_cancels_its_waiters_instead_of_leaving_them_hanging() -> None:
    started = asyncio.Event()

    async def stuck(items: list[int]) -> list[int]:
        started.set()
        await asyncio.Event().wait()
        return items

    commit: GroupCommit[int, int] = GroupCommit(stuck, "test")
    waiter = asyncio.create_task(commit(1))
    await started.wait()
    assert commit._flusher is not None
    commit._flusher.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiter, 5)
