"""Small text renderings shared by the views: times, progress bars, sparklines.

Every time is shown one way (``tgdaemon.display.relative``): against now in the tables (``in 4m``,
``3h ago``), in full and against now in a detail (``2026-01-15 11:57:03Z (3m ago)``).
"""

from __future__ import annotations

import math

from rich.text import Text

from tgdaemon.display import moment, relative_iso
from tgtui.model import parse_time

BLOCKS = "▁▂▃▄▅▆▇█"  # eighths of a cell from the bottom: a sparkline's
ACROSS = "▏▎▍▌▋▊▉█"  # and from the left: a progress bar's


def ago(value: str | None, now: float, past: str | None = None, empty: str = "") -> str:
    """An ISO instant against now, as every view shows one (``in 4m``, ``3h ago``); ``past`` names a deadline
    that has come (``due``, ``expired``) in place of how long ago it was."""
    return relative_iso(value, now, past, empty)


def when(value: str | None, now: float, empty: str = "never") -> str:
    """An ISO instant in full and against now, for a detail: ``2026-01-15 11:57:03Z (3m ago)``."""
    at = parse_time(value)
    return empty if at is None else moment(at, now)


def bar(done: int, total: int, width: int) -> Text:
    """A horizontal bar of ``width`` cells: eighths of a cell, so slow progress still moves."""
    if total <= 0 or width <= 0:
        return Text("·" * max(0, width), style="dim")
    eighths = round(min(1.0, max(0.0, done / total)) * width * 8)
    full, part = divmod(eighths, 8)
    filled = "█" * full + (ACROSS[part - 1] if part else "")
    return Text.assemble((filled, "green"), ("·" * (width - len(filled)), "dim"))


def percent(done: int, total: int) -> str:
    """``36%``, never ``100%`` before the end nor ``0%`` after the start."""
    if total <= 0:
        return "-"
    share = done / total * 100
    shown = math.floor(share) if share > 1 else math.ceil(share)
    return f"{shown}%"


def sparkline(values: list[float], width: int) -> Text:
    """``values`` summed into at most ``width`` buckets of consecutive values, drawn from zero to their max."""
    if not values or width <= 0:
        return Text("")
    size = math.ceil(len(values) / width)
    buckets = [sum(values[i:i + size]) for i in range(0, len(values), size)]
    high = max(buckets)
    return Text("".join(BLOCKS[int(max(0.0, v) / high * 7) if high > 0 else 0] for v in buckets), style="cyan")
