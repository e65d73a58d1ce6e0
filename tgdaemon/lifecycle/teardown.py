"""The daemon's stop as one stack: every part registers its undoing the moment it exists.

So a start that fails half-way undoes exactly what it had done, and a stop
undoes everything, by the same steps in reverse order of the start: there is
no second, hand-ordered list to keep in step with the first. The steps run on
a ``contextlib.AsyncExitStack``; each is bounded by its share of one budget
(``tgdaemon.bounded``), and one that fails or runs out of time is reported in
one line (no traceback: these are the expected failures of a stop, a hung
socket, a failing disk) while the next step still runs. The budget is fixed
when the stop begins, not when a step is registered: it is shorter once the
disk has failed, and only then is that known.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from tgdaemon.bounded import bounded

log = logging.getLogger("tgdaemon.shutdown")
MIN_STEP_SECONDS = 0.2  # however late, a step is never given quite nothing


class Teardown:
    def __init__(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        self._budget = 0.0
        self._reserve = 0.0
        self._deadline = 0.0

    def step(self, what: str, undo: Callable[[], Awaitable[object]], share: float) -> None:
        """``undo()`` within ``share`` of the budget, and never past the deadline the budget sets."""

        async def run() -> None:
            await bounded(what, undo(), self._share(share))

        self._stack.push_async_callback(run)

    def final(self, what: str, undo: Callable[[float], Awaitable[object]]) -> None:
        """``undo(seconds)`` with the reserve plus whatever the later steps left unused: the store's close, which
        bounds its own steps within the time it is given."""

        async def run() -> None:
            try:
                await undo(max(self._reserve, self._deadline + self._reserve - _clock()))
            except Exception as exc:
                _failed(what, exc)

        self._stack.push_async_callback(run)

    def now(self, what: str, undo: Callable[[], object]) -> None:
        """A step that cannot wait (release a lock, remove a file): if it fails, one line, and on."""

        def run() -> None:
            try:
                undo()
            except Exception as exc:
                _failed(what, exc)

        self._stack.callback(run)

    async def run(self, budget: float, reserve: float) -> None:
        """Every step, in reverse order of registration, within ``budget`` seconds; ``reserve`` of it kept for
        the ``final`` steps (at most half of it)."""
        self._budget = budget
        self._reserve = min(reserve, budget / 2)
        self._deadline = _clock() + budget - self._reserve
        await self._stack.aclose()

    def _share(self, fraction: float) -> float:
        return max(MIN_STEP_SECONDS, min((self._budget - self._reserve) * fraction, self._deadline - _clock()))


def _clock() -> float:
    return asyncio.get_running_loop().time()


def _failed(what: str, exc: Exception) -> None:
    log.warning("shutdown: %s failed (%s); going on", what, str(exc) or type(exc).__name__)
