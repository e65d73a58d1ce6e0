"""Keyset pages read one ahead, for both drivers: while the caller hands one page on (an export writing it
to its socket), the store already reads the next, so the reader, which does most of the work, never waits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

Keyset = tuple[float, int]  # (observed_at, id): the page after it


async def prefetched(read: Callable[[Keyset, int], Awaitable[list[Any]]], start: Keyset,
                      limit: int | None, page: int) -> AsyncIterator[list[Any]]:
    """Keyset pages from ``read(after, n)`` (rows ending in their keyset), to ``limit`` rows in all, each
    next one asked for before the current one is handed on."""
    left = limit
    n = page if left is None else min(page, left)
    ahead: asyncio.Future[list[Any]] | None = asyncio.ensure_future(read(start, n)) if n > 0 else None
    try:
        while ahead is not None:
            rows, ahead = await ahead, None
            if not rows:
                return
            if left is not None:
                left -= len(rows)
            if len(rows) == n and (left is None or left > 0):
                n = page if left is None else min(page, left)
                ahead = asyncio.ensure_future(read((rows[-1][-2], rows[-1][-1]), n))
            yield rows
    finally:
        if ahead is not None:
            ahead.cancel()
            await asyncio.gather(ahead, return_exceptions=True)
