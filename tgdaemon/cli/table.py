"""A listing table that prints what rich's would, at a few microseconds a row instead of milliseconds.

rich's ``Table`` measures and renders every cell through its markup, measurement and segment machinery:
about 2 ms a row, so ``accounts list`` of 100,000 accounts printed for minutes. This table is the same
one (borderless, ``pad_edge=False``, columns that never wrap), printed by string operations a column at
a time, and it prints the same characters (tests/test_cli_table.py holds the two equal, in a pipe and in
a coloured terminal of any width). rich is still the authority wherever a cell is more than plain text:
a cell with markup or an ``:emoji:`` code is parsed by rich (once per distinct text), a styled cell in a
terminal (the coloured state, the bold header) is rendered by rich (once per distinct text and width),
the widths of a table wider than the terminal are rich's own arithmetic, and a table holding a text
rich would break over lines (a newline, a tab, a control character) is handed to rich whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from rich.cells import cell_len, set_cell_size
from rich.console import Console
from rich.table import Table
from rich.text import Text

Justify = Literal["left", "right"]


class ListingTable:
    """Cells (strings, rich markup allowed) under fixed columns, added a column at a time as pages come in
    (``add_columns``), then printed (``print``)."""

    def __init__(self, console: Console, columns: Sequence[tuple[str, Justify]]) -> None:
        self.console = console
        self.columns = tuple(columns)
        self.cells: list[list[str]] = [[] for _ in self.columns]  # column by column
        self._natural = [0] * len(self.columns)  # the widest cell of each column, header left out
        self._plain_ascii = [True] * len(self.columns)  # every cell so far plain printable ASCII
        self._texts: dict[str, Text] = {}  # what rich makes of a cell that is more than plain text
        self._whole_to_rich = False  # a cell rich would break over lines: rich prints the table

    def add_columns(self, columns: Sequence[Sequence[str]]) -> None:
        """More rows, given as one sequence of cells per column (of equal lengths): a column of plain
        printable text is measured by one check over all its cells."""
        if len(columns) != len(self.columns) or len({len(c) for c in columns}) > 1:
            raise ValueError(f"{len(self.columns)} columns of equal length expected")
        if not columns[0]:
            return
        for i, cells in enumerate(columns):
            self.cells[i].extend(cells)
            joined = "".join(cells)
            if joined.isprintable() and "[" not in joined and ":" not in joined:
                if joined.isascii():
                    widest = max(map(len, cells))
                else:
                    widest, self._plain_ascii[i] = max(map(cell_len, cells)), False
            else:  # each distinct text measured once: a coloured state column is five texts
                widest, self._plain_ascii[i] = max(map(self._measure, set(cells))), False
            self._natural[i] = max(self._natural[i], widest)

    def _measure(self, cell: str) -> int:
        if cell.isprintable() and "[" not in cell and ":" not in cell:
            return cell_len(cell)
        text = self._texts.get(cell)
        if text is None:
            text = self._texts[cell] = self.console.render_str(cell)
            if not text.plain.isprintable():
                self._whole_to_rich = True
        return text.cell_len

    def print(self) -> None:
        console = self.console
        widths = None if self._whole_to_rich else self._widths()
        if widths is None:
            console.print(self._rich_table(zip(*self.cells)))
            return
        last = len(self.columns) - 1
        styled = console.is_terminal and console.color_system is not None
        specs: list[str] = []
        columns: list[Sequence[str]] = []
        for i, cells in enumerate(self.cells):
            left, right = " " * (i > 0), " " * (i < last)
            justify = self.columns[i][1]
            if self._plain_ascii[i] and self._natural[i] <= widths[i]:  # the common case: formatted as it is
                specs.append(f"{left}{{:{'<' if justify == 'left' else '>'}{widths[i]}}}{right}")
                columns.append(cells if justify == "left" else [c.rstrip() for c in cells])
            else:
                specs.append("{}")
                columns.append(self._column(cells, justify, widths[i], left, right, i, styled))
        lines = [self._header(widths), *(map("".join(specs).format, *columns) if self.cells[0] else ())]
        console.file.write("\n".join(lines) + "\n")
        console.file.flush()

    def _widths(self) -> list[int] | None:
        """The content width of each column: the widest cell or header, or rich's arithmetic when that is
        wider than the console (None where it leaves a column narrower than 2: rich prints that table)."""
        natural = [max(n, cell_len(name)) for n, (name, _) in zip(self._natural, self.columns)]
        padding = len(self.columns) * 2 - 2
        if sum(natural) + padding <= self.console.width:
            return natural
        proxy = self._rich_table([["x" * n for n in natural]])
        total = proxy._calculate_column_widths(self.console, self.console.options)  # rich's own arithmetic
        widths = [w - (i > 0) - (i < len(total) - 1) for i, w in enumerate(total)]
        return widths if min(widths) >= 2 else None

    def _column(self, cells: Sequence[str], justify: Justify, width: int, left: str, right: str, index: int,
                styled: bool) -> list[str]:
        """A column with its padding, each distinct text made once (a coloured state column is five)."""
        done: dict[str, str] = {}
        for cell in set(cells):
            text = self._texts.get(cell)
            if text is not None and styled and text.spans:
                done[cell] = self._styled(index, cell, width)
            else:
                done[cell] = left + _fit(cell if text is None else text.plain, width, justify) + right
        return list(map(done.__getitem__, cells))

    def _header(self, widths: Sequence[int]) -> str:
        """The header line as rich prints it (bold in a terminal), from a table of fixed widths and no rows."""
        table = self._rich_table([], widths)
        with self.console.capture() as captured:
            self.console.print(table)
        return captured.get().rstrip("\n")

    def _styled(self, index: int, cell: str, width: int) -> str:
        """One styled cell with its padding, as rich prints it at this width: the cell between two columns
        of width 0 (whose padding is cut off again), so it is padded as in its own place in the table."""
        table = Table(box=None, pad_edge=False, show_header=False)
        before, after = index > 0, index < len(self.columns) - 1
        if before:
            table.add_column(width=0)
        table.add_column(justify=self.columns[index][1], no_wrap=True, width=width)
        if after:
            table.add_column(width=0)
        table.add_row(*([""] * before), cell, *([""] * after))
        with self.console.capture() as captured:
            self.console.print(table)
        line = captured.get().rstrip("\n")
        return line[1 if before else 0:len(line) - 1 if after else len(line)]

    def _rich_table(self, rows: Iterable[Sequence[str]], widths: Sequence[int] | None = None) -> Table:
        table = Table(box=None, pad_edge=False)
        for i, (name, justify) in enumerate(self.columns):
            table.add_column(name, justify=justify, no_wrap=True, width=None if widths is None else widths[i])
        for row in rows:
            table.add_row(*row)
        return table


def _fit(text: str, width: int, justify: Justify) -> str:
    """rich's no-wrap cell: cut to the width with an ellipsis, padded with spaces (right: stripped first)."""
    if justify == "right":
        text = text.rstrip()
    size = len(text) if text.isascii() else cell_len(text)
    if size > width:
        text, size = set_cell_size(text, width - 1) + "…", width
    return text + " " * (width - size) if justify == "left" else " " * (width - size) + text
