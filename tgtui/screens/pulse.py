"""The pulse view: tasks done and failed per minute over the last hour, one chart per queue.

Counts per minute are not in the stream: the app asks ``GET /v1/pulse?minutes=60`` every few seconds
while this view is shown. Each chart's y-axis is tasks per minute (its scale written beside it), its
x-axis the last hour ("-60m" to "now"); failures are the red part at the foot of each bar. The last
bar is the minute under way, so it is low until the minute ends.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.css.query import NoMatches
from textual.geometry import Size
from textual.screen import Screen
from textual.widgets import Footer, Input

from tgdaemon.display import relative
from tgtui import commands
from tgtui.chart import margin, nice_ceiling, plot
from tgtui.commands import CommandInput
from tgtui.model import Pulse
from tgtui.screens.base import FleetScreen
from tgtui.widgets.chart import ChartView
from tgtui.widgets.header import FleetHeader, OfflineBanner

if TYPE_CHECKING:
    from tgtui.app import FleetApp

DONE, FAILED = "#5fb030", "#e0403a"  # fixed colours, not the theme's: one is also the other's background
MIN_BARS, MAX_BARS = 2, 10  # rows of bars per queue: readable at 80x24 with three queues, not a wall at 45
QUEUE_ORDER = ("fast", "media")  # then the pulled queues, by name


def queue_order(names: list[str]) -> list[str]:
    return sorted(names, key=lambda n: (QUEUE_ORDER.index(n) if n in QUEUE_ORDER else len(QUEUE_ORDER), n))


def legend(pulse: Pulse | None, error: str | None, now: float) -> Text:
    out = Text.assemble(("Tasks per minute, last hour: ", "bold"), ("█", DONE), " done ", ("█", FAILED), " failed")
    if pulse is not None:
        out.append(f"   as of {relative(pulse.at, now)}", style="dim")
    if error:
        out.append_text(Text.assemble("\n", (f"the daemon's pulse: {error}", "bold red")))
    return out


def fold(values: list[int], per: int) -> list[int]:
    """Minutes summed ``per`` at a time, the current minute in the last group: for a terminal narrower
    than an hour of bars."""
    start = len(values) % per
    head = [sum(values[:start])] if start else []
    return head + [sum(values[i:i + per]) for i in range(start, len(values), per)]


def fit(done: list[int], failed: list[int], width: int, bars: int) -> tuple[int, float]:
    """(minutes per bar, the scale's top): one minute a bar unless the width cannot hold them with the scale."""
    per = 1
    while True:
        top = nice_ceiling(max(d + f for d, f in zip(fold(done, per), fold(failed, per), strict=True)))
        if math.ceil(len(done) / per) <= max(1, width - margin(0, top, bars)):
            return per, top
        per += 1


def queue_chart(name: str, done: list[int], failed: list[int], width: int, bars: int, gutter: int = 0,
                ) -> list[Text]:
    """A queue's heading (its totals in the hour) and its chart; one line when it did nothing. ``gutter``:
    the widest scale of the queues shown, so their time axes line up."""
    if not any(done) and not any(failed):
        return [Text.assemble((f"{name:<14}", "bold"), ("nothing done or failed in the last hour", "dim"))]
    heading = Text.assemble((f"{name:<14}", "bold"), (f"{sum(done):,} done", DONE), "  ",
                            (f"{sum(failed):,} failed", FAILED if sum(failed) else "dim"),
                            (f"   this minute {done[-1] + failed[-1]}", "dim"))
    minutes = len(done)
    per, top = fit(done, failed, width - max(0, gutter + 2 - margin(0, 1, bars)), bars)
    done_n, failed_n = fold(done, per), fold(failed, per)
    room = width - max(margin(0, top, bars), gutter + 2)
    cell = max(1, room // len(done_n))
    unit = "tasks/min" if per == 1 else f"tasks/{per} min"
    heading.append(f"   y: {unit}, 0 to {top:,.0f}", style="dim")
    columns = [((float(f), FAILED), (float(d), DONE)) for d, f in zip(done_n, failed_n, strict=True)]
    return [heading, *plot(columns, height=bars, x_labels=(f"-{minutes}m", f"-{minutes // 2}m", "now"),
                           high=top, cell_width=cell, gutter=gutter)]


def draw(pulse: Pulse | None, error: str | None, now: float, width: int, height: int) -> list[Text]:
    """Every queue's chart in ``width`` x ``height``: the bars' height shared out between the queues."""
    lines = list(legend(pulse, error, now).split("\n"))
    if pulse is None:
        if not error:
            lines.append(Text("asking the daemon for its pulse…", style="dim"))
        return lines
    names = queue_order(list(pulse.queues))
    if not names:
        lines.append(Text("no queues reported", style="dim"))
        return lines
    busy = [n for n in names if any(pulse.queues[n][0]) or any(pulse.queues[n][1])]
    spare = height - len(lines) - len(names) - 2 * len(busy)  # headings, and each chart's x-axis
    bars = max(MIN_BARS, min(MAX_BARS, spare // max(1, len(busy))))
    gutter = max((margin(0, fit(*pulse.queues[n], width, bars)[1], bars) - 2 for n in busy), default=0)
    for name in names:
        done, failed = pulse.queues[name]
        lines += queue_chart(name, done, failed, width, bars, gutter)
    return lines


class PulseScreen(Screen[None]):
    """A view like the others (header, view keys, footer), without a table: no filter or sort here."""

    DEFAULT_CSS = """
    PulseScreen VerticalScroll { height: 1fr; padding: 0 1; }
    PulseScreen ChartView { height: auto; }
    PulseScreen #command { dock: bottom; display: none; height: 3; margin-bottom: 1; }
    PulseScreen #command.shown { display: block; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        *(b for b in FleetScreen.BINDINGS if not isinstance(b, tuple) and b.action.startswith("app.")),
        Binding("colon", "command", "Command"),
        Binding("escape", "close_command", "Close the command line", show=False),
    ]

    @property
    def fleet(self) -> FleetApp:
        return cast("FleetApp", self.app)

    def compose(self) -> ComposeResult:
        yield FleetHeader()
        yield OfflineBanner()
        with VerticalScroll():
            yield ChartView(self.chart, id="pulse")
        yield CommandInput(commands.suggestions(self.fleet.MODES, ()), id="command",
                           placeholder="command: a view (accounts, tasks…), help, q; tab: complete")
        yield Footer(compact=True)

    def action_command(self) -> None:
        prompt = self.query_one("#command", Input)
        prompt.value = ""
        prompt.add_class("shown")
        prompt.focus()

    def action_close_command(self) -> None:
        self.query_one("#command", Input).remove_class("shown")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """The same command line as the list views' (tgtui/commands.py)."""
        problem = commands.run(self.fleet, self, event.value)
        if problem:
            self.notify(problem, severity="error")
            return
        event.input.remove_class("shown")

    def chart(self, width: int, height: int) -> list[Text]:
        """Drawn to the scrolling box's height, not the widget's own (which is set from the lines drawn)."""
        model = self.fleet.model
        return draw(model.pulse, model.pulse_error, self.fleet.clock(), width,
                    self.query_one(VerticalScroll).content_size.height)

    _seen_rev = -1
    _seen_size: Size | None = None

    def on_screen_resume(self) -> None:
        self._seen_rev = -1
        self.repaint()

    def repaint(self) -> None:
        offline_for = self.fleet.offline_for()
        try:
            header, banner = self.query_one(FleetHeader), self.query_one(OfflineBanner)
            view, box = self.query_one(ChartView), self.query_one(VerticalScroll)
        except NoMatches:  # the app is closing
            return
        header.paint(self.fleet.model, self.fleet.clock(), self.fleet.current_mode, offline_for is not None)
        banner.paint(offline_for, self.fleet.client.socket_path, self.fleet.model.store_down)
        rev, size = self.fleet.model.pulse_rev, box.content_size
        if rev != self._seen_rev or size != self._seen_size:
            self._seen_rev, self._seen_size = rev, size
            view.styles.height = len(self.chart(size.width, size.height))
            view.refresh(layout=True)
