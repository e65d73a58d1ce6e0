"""What the quota detail draws of a quota's measurements: a chart with its scale, or sentences while too few.

A post quota's chart is the views gained between measurements (summed per span of time); a channel
quota's is its subscribers (the last count in each span, on a scale from their least to their most).
Under three measurement times there is no line to draw: each measurement is said in words instead.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from tgdaemon.display import moment, relative, span
from tgtui.chart import buckets, margin, nice_ceiling, plot
from tgtui.model import parse_time, views_gained

MIN_POINTS = 3  # measurement times a chart needs: two make a line of two dots, which says less than words
COLOUR = "#3fa7c0"


def series(quota: dict[str, Any], rows: list[dict[str, Any]]) -> tuple[str, list[tuple[float, float]], str]:
    """(what the y-axis counts, its points (time, value), how a span sums them)."""
    if quota["action"] == "channel_stats":  # no posts: the channel's size is the series
        return "subscribers", [(parse_time(m["observed_at"]) or 0.0, float(m["subscribers"])) for m in rows
                               if m.get("subscribers") is not None], "last"
    return "views gained", views_gained(rows), "sum"


def title(quota: dict[str, Any], rows: list[dict[str, Any]], width: int, height: int) -> str:
    """The chart's heading: what its bars are, over what time (for a chart of ``width`` x ``height``)."""
    what, points, how = series(quota, rows)
    times = sorted({at for at, _ in points})
    if len(times) < MIN_POINTS:
        return "Subscribers" if what == "subscribers" else "Views gained between measurements"
    n = _fit(points, times, how, width, height)[0]
    first, last = times[0], times[-1]
    each = span((last - first) / n)
    if what == "subscribers":
        return f"Subscribers over {span(last - first)} (each step: the last count in {each})"
    return f"Views gained over {span(last - first)} (each bar: the views gained in {each})"


def draw(quota: dict[str, Any], rows: list[dict[str, Any]], now: float, width: int, height: int) -> list[Text]:
    """The chart's lines for ``width`` x ``height`` cells (the last two rows are the x-axis)."""
    what, points, how = series(quota, rows)
    times = sorted({at for at, _ in points})
    if not times:
        return [Text(_none_yet(quota, now), style="dim")]
    if len(times) < MIN_POINTS:
        return _in_words(quota, rows, times, now)
    n, spans, low, top, room = _fit(points, times, how, width, height)
    first, last = times[0], times[-1]
    labels = (relative(first, now), relative((first + last) / 2, now), relative(last, now))
    return plot([None if v is None else ((v, COLOUR),) for v in spans], height=max(1, height - 2),
                x_labels=labels, low=low, high=top, cell_width=max(1, room // n), level=how == "last")


def _fit(points: list[tuple[float, float]], times: list[float], how: str, width: int, height: int,
         ) -> tuple[int, list[float | None], float, float, int]:
    """(spans, their values, the scale's bottom and top, the bars' room): as many spans as measurement times,
    up to the room the scale leaves; each drawn as wide as the room allows."""
    first, last = times[0], times[-1]
    bars_height = max(1, height - 2)
    n = max(1, min(len(times), width - 8))
    for _ in range(3):  # the scale's width depends on the top, the top on how many spans share the width
        spans = buckets(points, first, last, n, how)
        low, top = _range([v for v in spans if v is not None], how)
        room = max(1, width - margin(low, top, bars_height))
        if n <= room:
            break
        n = room
    return n, spans, low, top, room


def _range(values: list[float], how: str) -> tuple[float, float]:
    """The y-axis: from zero to a round number for gains; from the least to the most for a level, or from
    zero when it stayed flat (a flat line part way up, not one glued to the bottom of its own range)."""
    if how == "last" and values and min(values) < max(values):
        return min(values), max(values)
    return 0.0, nice_ceiling(max(values, default=0.0))


def _none_yet(quota: dict[str, Any], now: float) -> str:
    at = parse_time(quota.get("next_run_at"))
    hint = f": the first is due {relative(at, now)}" if at is not None and at > now else ""
    return f"No measurements yet{hint}."


def _in_words(quota: dict[str, Any], rows: list[dict[str, Any]], times: list[float], now: float) -> list[Text]:
    """One line per measurement time, in place of a chart of one or two bars."""
    out = [Text(f"{len(times)} measurement time{'s' if len(times) > 1 else ''} so far; the chart starts at"
                f" {MIN_POINTS}.", style="dim")]
    gained = dict.fromkeys(times, 0.0)
    for at, value in views_gained(rows):
        gained[at] = gained.get(at, 0.0) + value
    for at in times:
        found = [m for m in rows if parse_time(m["observed_at"]) == at]
        if quota["action"] == "channel_stats":
            text = f"{found[-1]['subscribers']:,} subscribers"
        else:
            seen = [m["views"] for m in found if m.get("views") is not None]
            text = f"{sum(seen):,} views on {len(seen)} post{'s' if len(seen) != 1 else ''}"
            if at != times[0]:
                text += f", {gained[at]:+,.0f} since the time before"
        out.append(Text.assemble(("  " + moment(at, now), "bold"), "  ", text))
    return out
