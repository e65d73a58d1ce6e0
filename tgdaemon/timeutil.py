"""One clock for the daemon, so tests and the simulator can move time without sleeping."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime


def now() -> float:
    return time.time()


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


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``12h``, ``7d`` or ``2w``."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    raw = text.strip().lower()
    unit = raw[-1:] if raw[-1:] in units else "s"
    number = raw[:-1] if raw[-1:] in units else raw
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 15m, 12h, 7d)") from None
    if not value > 0 or value * units[unit] > 10 * 365 * 86400:
        raise ValueError(f"duration out of range: {text!r} (more than 0, at most 10 years)")
    return value * units[unit]
