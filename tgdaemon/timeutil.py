"""One clock for the daemon, so tests and the simulator can move time without sleeping.

``now()`` is the only wall clock the daemon reads; ``steady()`` is the clock a
step of the wall clock cannot move (the step detector compares the two).
``step_wall_clock`` is the seam: a test steps the wall clock as an operator's
``date -s`` or an NTP correction would, without touching the host's clock.
"""

from __future__ import annotations

import functools
import re
import time
from datetime import UTC, datetime
from typing import overload

# CLOCK_BOOTTIME counts a suspend, CLOCK_MONOTONIC does not: with it, waking a
# laptop is not mistaken for a forward step of the wall clock.
_STEADY_ID = getattr(time, "CLOCK_BOOTTIME", None)
_step = 0.0


def now() -> float:
    return time.time() + _step


def steady() -> float:
    """Seconds on a clock that only moves forward, at the wall clock's pace, whatever the wall clock does."""
    return time.clock_gettime(_STEADY_ID) if _STEADY_ID is not None else time.monotonic()


def step_wall_clock(seconds: float) -> None:
    """Step ``now()`` by ``seconds`` (negative: back), as ``date -s`` would step the host's clock."""
    global _step
    _step += seconds


@overload
def iso(ts: float) -> str: ...


@overload
def iso(ts: float | None) -> str | None: ...


def iso(ts: float | None) -> str | None:
    """ISO 8601 UTC with a Z, the only time format the APIs emit."""
    if ts is None:
        return None
    return _iso_second(int(ts // 1))


@functools.lru_cache(maxsize=4096)
def _iso_second(second: int) -> str:
    """Cached by whole second: a batch of views or deltas shares a handful of timestamps, and
    formatting was a tenth of the time to publish them."""
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> float:
    """Seconds from ``90s``, ``15m``, ``1h30m``, ``2d12h``, ``1.5h`` or ``2w``: every part has its unit, because
    a bare ``90`` read as seconds once made a quota meant for 90 days expire in a minute and a half."""
    raw = text.strip().lower()
    parts = _DURATION_PART.findall(raw)
    if not parts or "".join(n + u for n, u in parts) != raw:
        hint = f"; write {raw}s, {raw}m, {raw}h or {raw}d" if re.fullmatch(r"\d+(\.\d+)?", raw) else ""
        raise ValueError(f"not a duration: {text!r} (a number and a unit, s m h d w, as in 90s, 1h30m, 7d{hint})")
    seconds = sum(float(n) * DURATION_UNITS[u] for n, u in parts)
    if not seconds > 0 or seconds > 10 * 365 * 86400:
        raise ValueError(f"duration out of range: {text!r} (more than 0, at most 10 years)")
    return seconds
