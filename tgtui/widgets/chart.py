"""A widget that draws a chart (``tgtui.chart``) to whatever size it is given.

The chart's bars, scale and labels depend on the width and height the layout gives the widget, so the
lines are drawn by a function of the two at render time, not once when the data comes.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.widget import Widget

Draw = Callable[[int, int], list[Text]]


class ChartView(Widget):
    DEFAULT_CSS = "ChartView { height: 8; }"

    def __init__(self, draw: Draw, *, id: str | None = None) -> None:  # noqa: A002 (Textual's name)
        super().__init__(id=id)
        self.draw = draw

    def render(self) -> Text:
        width, height = self.content_size
        return Text("\n").join(self.draw(width, height)[:height]) if width and height else Text("")
