"""What the views share: header, offline banner, one LineTable, a filter line, the footer.

A view repaints from the model when the app's timer says so, and only does
work when the model changed (its ``rev``) or, once a second, when the clock
changes what it shows (a countdown, a cooldown that runs out).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, Input

from tgtui import commands
from tgtui.commands import CommandInput
from tgtui.table import Row, RowSet
from tgtui.widgets.header import FleetHeader, OfflineBanner
from tgtui.widgets.marks import MarkLine
from tgtui.widgets.table import LineTable

if TYPE_CHECKING:
    from tgtui.app import FleetApp

CLOCK_REFRESH_SECONDS = 1.0
WARM_ROWS = 5000  # rows whose search text a repaint makes while idle (about 15 ms): 50,000 in 2.5 s


class FleetScreen(Screen[None]):
    DEFAULT_CSS = """
    FleetScreen #filter, FleetScreen #command { dock: bottom; display: none; height: 3; margin-bottom: 1; }
    FleetScreen #filter.shown, FleetScreen #command.shown { display: block; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("tab,right_square_bracket", "app.next_view", "View"),
        Binding("shift+tab,left_square_bracket", "app.previous_view", "Previous view", show=False),
        Binding("P", "app.proxies", "Proxies", show=False),
        Binding("T", "app.tasks", "Tasks", show=False),
        Binding("U", "app.pulse", "Pulse", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("colon", "command", "Command"),
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse", "Reverse sort", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]
    MARKABLE = False
    NOUN = "row"  # what the mark line counts
    EMPTY = "nothing to show"

    def __init__(self) -> None:
        super().__init__()
        self.rowset = self.make_rowset()
        self._seen_rev = -1
        self._clock_drawn = 0.0

    @property
    def fleet(self) -> FleetApp:
        return cast("FleetApp", self.app)

    def make_rowset(self) -> RowSet:
        raise NotImplementedError

    def rows(self) -> Iterable[Row]:
        raise NotImplementedError

    def rev(self) -> int:
        raise NotImplementedError

    def changed(self, since: int) -> list[Row] | None:
        """The rows changed after revision ``since``, when the model keeps them (else None: rebuild whole)."""
        return None

    @property
    def table(self) -> LineTable:
        return self.query_one(LineTable)

    def compose(self) -> ComposeResult:
        yield FleetHeader()
        yield OfflineBanner()
        yield LineTable(self.rowset, self.fleet.clock, markable=self.MARKABLE, empty=self.EMPTY)
        yield MarkLine()
        yield Input(placeholder="filter: words, or column:value (state:cooldown) — enter keeps it, esc clears",
                    id="filter")
        yield CommandInput(commands.suggestions(self.fleet.MODES, self.rowset.columns.values()), id="command",
                           placeholder="command: a view (quotas…), filter TEXT, sort COLUMN[!], help, q; tab: complete")
        yield Footer(compact=True)

    def on_screen_resume(self) -> None:
        self._seen_rev = -1
        self.repaint()

    def repaint(self) -> None:
        now = self.fleet.clock()
        offline_for = self.fleet.offline_for()
        try:
            header, banner = self.query_one(FleetHeader), self.query_one(OfflineBanner)
        except NoMatches:  # the app is closing and its widgets are gone before the repaint timer is
            return
        header.paint(self.fleet.model, now, self.fleet.current_mode, offline_for is not None)
        banner.paint(offline_for, self.fleet.client.socket_path, self.fleet.model.store_down)
        ticked = now - self._clock_drawn >= CLOCK_REFRESH_SECONDS
        if ticked:
            self._clock_drawn = now
        if self.rev() != self._seen_rev or (ticked and self.rowset.timed):
            self._seen_rev = self.rev()
            model = self.fleet.model  # no rows yet because none has come: not "no accounts"
            self.table.empty = "loading…" if model.loading is not None or model.epoch is None else self.EMPTY
            self.rowset.rebuild(self.rows(), now, self._seen_rev, self.changed)
            self.table.rows_changed()
        elif ticked:
            self.table.refresh()  # countdowns are drawn from the clock: redraw the visible lines only
        else:
            self.rowset.warm(self.rows(), self._seen_rev, WARM_ROWS)  # for the next filter keystroke
        self.paint_marks()

    def paint_marks(self) -> None:
        """The marked count (of the rows shown: what an action takes) and a bulk action's progress."""
        try:
            line = self.query_one(MarkLine)
        except NoMatches:
            return
        line.paint(self.table.marked_count() if self.MARKABLE else 0, self.NOUN, self.fleet.progress_line())

    def action_mark(self) -> None:
        self.table.toggle_mark()
        self.paint_marks()

    def action_mark_all(self) -> None:
        self.table.mark_all()
        self.paint_marks()

    def action_invert_marks(self) -> None:
        self.table.invert_marks()
        self.paint_marks()

    def action_clear_marks(self) -> None:
        self.table.clear_marks()
        self.paint_marks()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter" and self.rowset.check_filter(event.value) is None:
            self._refilter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "command":
            self._run_command(event.value)
            return
        if event.input.id != "filter":
            return
        problem = self.rowset.check_filter(event.value)
        if problem:
            self.notify(problem, severity="error")
            return
        event.input.remove_class("shown")
        self.table.focus()

    def action_clear_filter(self) -> None:
        prompt = self.query_one("#command", Input)
        if prompt.has_class("shown"):  # esc leaves the command prompt, not the filter
            prompt.remove_class("shown")
            self.table.focus()
            return
        box = self.query_one("#filter", Input)
        box.value = ""
        box.remove_class("shown")
        self._refilter("")
        self.table.focus()

    def _refilter(self, text: str) -> None:
        self.rowset.filter = text
        self._seen_rev = -1
        self.repaint()

    def action_sort(self) -> None:
        self.rowset.cycle_sort()
        self._refilter(self.rowset.filter)

    def action_reverse(self) -> None:
        self.rowset.desc = not self.rowset.desc
        self._refilter(self.rowset.filter)

    # command mode (`:`): what a command line does to this view; tgtui/commands.py reads the line

    def action_command(self) -> None:
        prompt = self.query_one("#command", Input)
        prompt.value = ""
        prompt.add_class("shown")
        prompt.focus()

    def _run_command(self, line: str) -> None:
        prompt = self.query_one("#command", Input)
        problem = commands.run(self.fleet, self, line)
        if problem:
            self.notify(problem, severity="error")
            return
        prompt.remove_class("shown")  # also when the command switched views: this one is as left on return
        self.table.focus()

    def set_filter(self, text: str) -> str | None:
        """The filter as ``:filter TEXT`` sets it (also in the filter line); a one-line complaint, else None."""
        problem = self.rowset.check_filter(text)
        if problem:
            return problem
        box = self.query_one("#filter", Input)
        with box.prevent(Input.Changed):
            box.value = text
        self._refilter(text)
        return None

    def set_sort(self, key: str, desc: bool) -> None:
        self.rowset.sort, self.rowset.desc = key, desc
        self._refilter(self.rowset.filter)
