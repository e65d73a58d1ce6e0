"""Group commit: writes that arrive while a batch is being written go together in the next batch.

One transaction, one commit hook and one round of thread hops then serve many
concurrent callers (setup outcomes, provider pulls and reports alike), which is
what lets unbatched traffic approach batched throughput. The batch is written
by a task of its own, so a caller that is cancelled (a client that hangs up)
never cuts short the writes of the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class GroupCommit(Generic[In, Out]):
    def __init__(self, write: Callable[[list[In]], Awaitable[list[Out]]], name: str) -> None:
        self._write = write
        self._name = name
        self._waiting: list[tuple[In, asyncio.Future[Out]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def __call__(self, item: In) -> Out:
        done: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name=self._name)
        return await done

    async def drain(self) -> None:
        """Until what was handed in so far is written (at shutdown, before the store closes)."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)

    async def _flush(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                results = await self._write([item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"{self._name}: {len(results)} results for {len(batch)} writes")
            except BaseException as exc:  # every waiter hears of it, even when the flusher is cancelled
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
                if not isinstance(exc, Exception):
                    raise
            else:
                for (_, done), result in zip(batch, results, strict=True):
                    if not done.done():
                        done.set_result(result)
