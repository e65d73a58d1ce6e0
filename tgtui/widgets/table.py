"""A table on Textual's Line API: it draws only the visible lines, from rows it does not own.

The stock DataTable keeps a copy of every cell and rebuilds its caches on
each change (about 115 ms per tick at 10,000 rows). This widget holds a
``RowSet`` (the model's rows in display order) and renders a line when
Textual asks for it, with the clock read at draw time: a countdown ticks by
refreshing the visible lines, never by rewriting cells. The cursor follows
the selected row's key when rows move.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tgtui.table import Column, RowSet, layout

MARK_WIDTH = 2
# The keys of a view whose table marks (its screen binds them, with space for one row): ctrl+a as in a file
# manager, * to invert as in Midnight Commander, ctrl+\ to clear as in k9s. They act on the rows shown.
MARK_BINDINGS: list[BindingType] = [
    Binding("ctrl+a", "mark_all", "Mark all shown (all the filter matches)", show=False),
    Binding("asterisk", "invert_marks", "Invert the marks of the rows shown", show=False),
    Binding("ctrl+backslash", "clear_marks", "Clear the marks", show=False),
]


class LineTable(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    LineTable { overflow-x: hidden; height: 1fr; }
    LineTable > .linetable--header { text-style: bold; background: $panel; }
    LineTable > .linetable--cursor { background: $block-cursor-background; color: $block-cursor-foreground; }
    LineTable:blur > .linetable--cursor { background: $block-cursor-blurred-background; }
    LineTable > .linetable--marked { background: $warning 25%; }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {"linetable--header", "linetable--cursor", "linetable--marked"}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j,down", "move(1)", "Down", show=False),
        Binding("k,up", "move(-1)", "Up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("g,home", "first", "First", show=False),
        Binding("G,end", "last", "Last", show=False),
        Binding("enter", "choose", "Detail", show=False),
    ]

    class Chosen(Message):
        """The operator pressed enter on a row."""

        def __init__(self, table: LineTable, key: Any) -> None:
            super().__init__()
            self.table = table
            self.key = key

    def __init__(self, rowset: RowSet, clock: Callable[[], float], *, markable: bool = False,
                 empty: str = "nothing to show", id: str | None = None) -> None:
        super().__init__(id=id)
        self.rowset = rowset
        self.clock = clock
        self.markable = markable
        self.marked: set[Any] = set()
        self.cursor = 0
        self.empty = empty
        self._selected: Any = None
        self._drawn = 0  # bumped at each rows_changed: the layout of the visible rows is made again
        self._layout: tuple[tuple[Any, ...], list[tuple[Column, int]], tuple[Any, ...]] = ((), [], ())
        # the lines drawn in this layout (and second, style, focus, theme): a row's line is made again only when
        # its dict, its cursor or its mark changed; a tick redraws the visible lines, most of them unchanged
        self._lines: tuple[Any, dict[Any, tuple[dict[str, Any], tuple[bool, bool], Strip]]] = ((), {})

    @property
    def selected_key(self) -> Any:
        return self._selected

    def targets(self) -> list[Any]:
        """What an action applies to: the marked rows that are still shown, else the selected one."""
        marked = [k for k in self.marked if k in self.rowset.index]
        if marked:
            return sorted(marked)
        return [self._selected] if self._selected is not None else []

    def rows_changed(self) -> None:
        """The RowSet was rebuilt: keep the cursor on the same key, resize, redraw."""
        rows = self.rowset.rows
        if self._selected is not None:
            if not (self.cursor < len(rows) and rows[self.cursor][self.rowset.key] == self._selected):
                at = self.rowset.position(self._selected)  # it moved: look for it
                if at is not None:
                    self.cursor = at
        self.cursor = max(0, min(self.cursor, len(self.rowset.rows) - 1))
        self._selected = self.rowset.rows[self.cursor][self.rowset.key] if self.rowset.rows else None
        self.virtual_size = Size(self.area.width, len(self.rowset.rows) + 1)
        self._drawn += 1
        self._follow_cursor()
        self.refresh()

    @property
    def area(self) -> Size:
        """What is left for the lines once the scrollbar has its column."""
        return self.scrollable_content_region.size

    def on_resize(self) -> None:
        self.virtual_size = Size(self.area.width, len(self.rowset.rows) + 1)
        self._follow_cursor()

    def _follow_cursor(self) -> None:
        """``force``: rows that just came (a snapshot's first frame) have no scrollbar until the next layout, and
        without it Textual would drop the scroll."""
        visible = max(1, self.area.height - 1)
        top = round(self.scroll_y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True, force=True)
        elif self.cursor >= top + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False, immediate=True, force=True)

    def _set_cursor(self, index: int) -> None:
        rows = self.rowset.rows
        if not rows:
            return
        self.cursor = max(0, min(index, len(rows) - 1))
        self._selected = rows[self.cursor][self.rowset.key]
        self._follow_cursor()
        self.refresh()

    def action_move(self, step: int) -> None:
        self._set_cursor(self.cursor + step)

    def action_page(self, direction: int) -> None:
        self._set_cursor(self.cursor + direction * max(1, self.area.height - 2))

    def action_first(self) -> None:
        self._set_cursor(0)

    def action_last(self) -> None:
        self._set_cursor(len(self.rowset.rows) - 1)

    def action_choose(self) -> None:
        if self._selected is not None:
            self.post_message(self.Chosen(self, self._selected))

    def toggle_mark(self) -> None:
        """Mark or unmark the selected row, then step down, as a file manager does."""
        if self._selected is None:
            return
        self.marked ^= {self._selected}
        self.action_move(1)
        self.refresh()

    def mark_all(self) -> None:
        """Mark every row shown: all the rows the filter matches, on screen or not."""
        self.marked.update(self.rowset.index)
        self.refresh()

    def invert_marks(self) -> None:
        """Marked rows shown become unmarked and the others shown marked; marks of hidden rows stay as they are."""
        shown = self.rowset.index.keys()
        self.marked = (self.marked - shown) | (shown - self.marked)
        self.refresh()

    def clear_marks(self) -> None:
        self.marked.clear()
        self.refresh()

    def marked_count(self) -> int:
        """The marked rows still shown: those an action would apply to."""
        index = self.rowset.index
        return sum(k in index for k in self.marked)

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            self._set_cursor(round(self.scroll_y) + event.y - 1)

    def columns(self) -> list[tuple[Column, int]]:
        """The layout for the rows on screen (what their texts need), made once per frame, not per line."""
        width, height = self.area.width - (MARK_WIDTH if self.markable else 0), self.area.height
        top, now = round(self.scroll_y), self.clock()
        key = (width, height, top, self._drawn, self.rowset.sort, int(now))
        if key != self._layout[0]:
            rows = self.rowset.rows[top:top + max(0, height - 1)]
            wants = {c.key: max((cell_len(c.text(r, now)) for r in rows), default=0)
                     for c in self.rowset.columns.values()}
            shown = layout(self.rowset.columns.values(), width, sort=self.rowset.sort, wants=wants)
            # what a row's line depends on besides the row: the widths, the second if a shown column is timed, and
            # the rebuild if one draws from more than its row (a sparkline of the model's measurements)
            looks = (*((c.key, w) for c, w in shown), int(now) if any(c.timed for c, _ in shown) else None,
                     self._drawn if not all(c.cached for c, _ in shown) else None)
            self._layout = (key, shown, looks)
        return self._layout[1]

    def render_line(self, y: int) -> Strip:
        width = self.area.width
        base = self.rich_style
        if y == 0:
            return self._header(width, base)
        index = round(self.scroll_y) + y - 1
        rows = self.rowset.rows
        if index >= len(rows):
            if not rows and y == 1:
                return self._strip(Text(f" {self.empty}", style="dim"), width, base)
            return Strip.blank(width, base)
        row = rows[index]
        key = row[self.rowset.key]
        shown = self.columns()
        looks = (index == self.cursor, key in self.marked)
        frame = (self._layout[2], base, self.has_focus, self.app.theme)
        if frame != self._lines[0]:
            self._lines = (frame, {})
        drawn = self._lines[1].get(key)
        if drawn is not None and drawn[0] is row and drawn[1] == looks:
            return drawn[2]
        strip = self._line(row, looks, shown, width, base)
        if len(self._lines[1]) > 4 * max(1, self.area.height):
            self._lines[1].clear()
        self._lines[1][key] = (row, looks, strip)
        return strip

    def _line(self, row: dict[str, Any], looks: tuple[bool, bool], shown: list[tuple[Column, int]], width: int,
              base: Style) -> Strip:
        cursor, marked = looks
        style = Style()
        if cursor:
            style = self.get_component_rich_style("linetable--cursor")
        elif marked:
            style = self.get_component_rich_style("linetable--marked")
        line = Text(style=style, no_wrap=True, end="")
        if self.markable:
            line.append("● " if marked else "  ", style="bold yellow")
        now = self.clock()
        for n, (column, cells) in enumerate(shown):
            if n:
                line.append(" ")
            value = column.cell(row, now)
            cell = value if isinstance(value, Text) else Text(value)
            cell.truncate(cells, overflow="ellipsis")
            if column.right:
                cell.pad_left(cells - cell.cell_len)
            else:
                cell.pad_right(cells - cell.cell_len)
            line.append_text(cell)
        return self._strip(line, width, base)

    def _header(self, width: int, base: Style) -> Strip:
        style = self.get_component_rich_style("linetable--header")
        line = Text(style=style, no_wrap=True, end="")
        if self.markable:
            line.append(" " * MARK_WIDTH)
        arrow = " ▼" if self.rowset.desc else " ▲"
        for n, (column, cells) in enumerate(self.columns()):
            if n:
                line.append(" ")
            cell = Text(column.title)
            if column.key == self.rowset.sort:  # the arrow always shows, the title gives way
                cell.truncate(cells - len(arrow), overflow="ellipsis")
                cell.append(arrow)
            cell.truncate(cells, overflow="ellipsis", pad=True)
            line.append_text(cell)
        line.pad_right(width - line.cell_len)
        line.stylize(style)
        return self._strip(line, width, base)

    def _strip(self, line: Text, width: int, base: Style) -> Strip:
        segments = list(Segment.apply_style(line.render(self.app.console), base))
        return Strip(segments).crop_extend(0, width, base)
