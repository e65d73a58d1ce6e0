"""Small text renderings shared by the views: countdowns, progress bars, sparklines, times.

Durations are written as the CLI writes them (``3m 5s``, ``6d 23h``): one format for the operator.
"""

from __future__ import annotations

import math
from datetime import datetime

from rich.text import Text

from tgdaemon.display import duration
from tgtui.model import parse_time

BLOCKS = "▁▂▃▄▅▆▇█"


def until(value: str | None, now: float, past: str = "now") -> str:
    """Time left until an ISO instant, or ``past`` once it has come."""
    at = parse_time(value)
    if at is None:
        return ""
    return duration(at - now) if at > now else past


def clock_time(value: str | None) -> str:
    """An event's time as the operator's local ``HH:MM:SS``."""
    at = parse_time(value)
    return datetime.fromtimestamp(at).strftime("%H:%M:%S") if at is not None else ""


def bar(done: int, total: int, width: int) -> Text:
    """A progress bar of ``width`` cells: eighths of a cell, so slow progress still moves."""
    if total <= 0 or width <= 0:
        return Text(" " * max(0, width))
    eighths = round(min(1.0, max(0.0, done / total)) * width * 8)
    full, part = divmod(eighths, 8)
    filled = "█" * full + (BLOCKS[part - 1] if part else "")
    return Text.assemble((filled, "green"), ("·" * (width - len(filled)), "dim"))


def sparkline(values: list[float], width: int) -> Text:
    """``values`` summed into at most ``width`` buckets of consecutive values, drawn from zero to their max."""
    if not values or width <= 0:
        return Text("")
    size = math.ceil(len(values) / width)
    buckets = [sum(values[i:i + size]) for i in range(0, len(values), size)]
    high = max(buckets)
    return Text("".join(BLOCKS[int(max(0.0, v) / high * 7) if high > 0 else 0] for v in buckets), style="cyan")
