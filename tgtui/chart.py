"""Bar charts in text cells with a labelled scale: the quota detail's measurements and the pulse view.

A chart a person can read says what its axes are: the y-axis has its top, middle and bottom values written
beside it, the x-axis the time at its start, middle and end. Bars are drawn in eighths of a cell, so a
small change still shows; a column may stack segments (tasks failed under tasks done), each in its colour.
Nothing here knows a widget: a chart is a list of ``Text`` lines, tested as text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.text import Text

STEPS = (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10)
EIGHTHS = " ▁▂▃▄▅▆▇█"  # index = eighths of the cell filled from the bottom

Segment = tuple[float, str]  # a value and its colour (a plain colour name: it is also used as a background)
Stack = tuple[Segment, ...]  # a column's segments, bottom first


def number(value: float) -> str:
    """A scale label: ``950``, ``1.2k``, ``48k``, ``3.1M``, ``12.5``; a fraction only below a hundred."""
    size = abs(value)
    if size >= 1_000_000:
        return f"{value / 1_000_000:.1f}M".replace(".0M", "M")
    if size >= 10_000:
        return f"{value / 1000:.0f}k"
    if size >= 1000:
        return f"{value / 1000:.1f}k".replace(".0k", "k")
    if size >= 100 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.1f}"


def nice_ceiling(value: float) -> float:
    """The smallest round number (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a power of ten) at least ``value``:
    a top a scale can be read by, and close enough that the bars fill most of the chart."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next((step * power for step in STEPS if value <= step * power * (1 + 1e-9)), 10 * power)


def buckets(points: Sequence[tuple[float, float]], start: float, end: float, n: int,
            how: str = "sum") -> list[float | None]:
    """``points`` (time, value) into ``n`` equal spans of time from ``start`` to ``end``: summed, or the last
    value of each (``how="last"``, for a level such as subscribers); None where a span has no point."""
    out: list[float | None] = [None] * n
    span = max(end - start, 1e-9)
    for at, value in points:
        i = min(n - 1, max(0, int((at - start) / span * n)))
        current = out[i]
        out[i] = value if current is None or how == "last" else current + value
    return out


def _cell(stack: Stack, cuts: list[int], row: int) -> tuple[str, str]:
    """One cell of a column: its block character and style. ``cuts`` are the segments' tops in eighths."""
    base = row * 8
    fill = min(8, max(0, cuts[-1] - base)) if cuts else 0
    if fill == 0:
        return " ", ""
    inside = [i for i, top in enumerate(cuts) if top > base and (i == 0 or cuts[i - 1] < base + 8)]
    if len(inside) == 1:
        return EIGHTHS[fill], stack[inside[0]][1]
    lower, upper = inside[0], inside[-1]
    boundary = cuts[lower] - base
    if fill == 8:  # the lower colour in the block's foreground, the upper in its background
        return EIGHTHS[boundary], f"{stack[lower][1]} on {stack[upper][1]}"
    return EIGHTHS[fill], stack[lower if boundary * 2 >= fill else upper][1]


def _cuts(stack: Stack, low: float, high: float, height: int) -> list[int]:
    """Each segment's top, in eighths from the bottom: a segment above zero never vanishes into rounding."""
    total, sum_ = height * 8, 0.0
    cuts: list[int] = []
    for i, (value, _) in enumerate(stack):
        sum_ += max(0.0, value)
        top = round((sum_ - low) / (high - low) * total) if high > low else total
        floor = (cuts[-1] if cuts else 0) + (1 if value > 0 or (i == 0 and low > 0) else 0)
        cuts.append(min(total, max(top, floor)))
    return cuts


def scale(low: float, top: float, height: int) -> dict[int, str]:
    """The y-axis labels by row (0 the bottom): the bottom, the top and, from three rows, half way (on an odd
    height the middle of its row, on an even one its bottom edge)."""
    values = {height - 1: top, 0: low}
    if height >= 3:
        values[height // 2] = (low + top) / 2
    marks = {row: number(v) for row, v in values.items()}
    if len(set(marks.values())) < len(marks):  # a narrow range high up (subscribers): every digit
        marks = {row: f"{v:,.0f}" for row, v in values.items()}
    return marks


def margin(low: float, top: float, height: int) -> int:
    """How many cells the scale and the axis take on the left of the bars."""
    return max(len(m) for m in scale(low, top, height).values()) + 2


def plot(columns: Sequence[Stack | None], *, height: int, x_labels: tuple[str, str, str],
         low: float = 0.0, high: float | None = None, cell_width: int = 1, level: bool = False,
         gutter: int = 0) -> list[Text]:
    """The chart's lines, top first: ``height`` rows of bars with the scale on the left, the x-axis line
    and its three labels. ``high`` defaults to a round number above the tallest column; a column that is
    None had no measurement (drawn empty, unlike a zero). ``level``: only each column's top cell, a line
    for a count that is a level (subscribers), where a filled bar would be a wall. ``gutter``: the scale's
    least width, so that charts one above the other line their axes up."""
    tallest = max((sum(v for v, _ in c) for c in columns if c), default=0.0)
    top = high if high is not None else nice_ceiling(tallest)
    marks = scale(low, top, height)
    gutter = max(gutter, *(len(m) for m in marks.values()))
    cuts = [_cuts(c, low, top, height) if c else [] for c in columns]
    lines = []
    for row in range(height - 1, -1, -1):
        line = Text(f"{marks.get(row, ''):>{gutter}} " + ("┤" if row in marks else "│"), style="dim")
        for stack, column_cuts in zip(columns, cuts, strict=True):
            char, style = _cell(stack, column_cuts, row) if stack else (" ", "")
            if level and column_cuts and row != max(0, column_cuts[-1] - 1) // 8:
                char, style = " ", ""
            if stack and row == 0 and column_cuts[-1] == 0:  # measured, and nothing: a dot, unlike no measurement
                char, style = "·", "dim"
            line.append(char * cell_width, style)
        lines.append(line)
    width = len(columns) * cell_width
    lines.append(Text(" " * gutter + " └" + "─" * width, style="dim"))
    left, middle, right = x_labels
    axis = [" "] * width
    for text, at in ((left, 0), (middle, max(0, (width - len(middle)) // 2)), (right, max(0, width - len(right)))):
        if all(c == " " for c in axis[max(0, at - 1):at + len(text) + 1]):  # a label never overwrites another
            axis[at:at + len(text)] = text
    lines.append(Text(" " * (gutter + 2) + "".join(axis)[:width], style="dim"))
    return lines
