"""One step of a shutdown that can neither hang nor stop the steps after it.

``asyncio.wait_for`` is not enough for that: on a timeout it cancels the step
and then waits, unbounded, for the step to acknowledge the cancellation, and a
step whose thread is stuck in a system call (an aiosqlite connection on a
failing disk) never does. Here the step runs as a task of its own that is
cancelled and left behind when its time is up; the exit guard
(``lifecycle.exitguard``) ends the process should such a task keep it alive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

log = logging.getLogger("tgdaemon.shutdown")


async def bounded(step: str, aw: Awaitable[object], seconds: float) -> bool:
    """Await ``aw`` for at most ``seconds``; False (and one log line) when it failed or ran out of time."""
    task = asyncio.ensure_future(aw)
    done, _ = await asyncio.wait({task}, timeout=max(seconds, 0.0))
    if not done:
        task.cancel()
        log.warning("shutdown: %s did not finish within %.1f s; going on without it", step, seconds)
        return False
    if task.cancelled():
        return False
    if (exc := task.exception()) is not None:
        log.warning("shutdown: %s failed (%s); going on", step, exc)
        return False
    return True
