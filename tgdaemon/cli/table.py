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
    """Rows of strings (rich markup allowed) under fixed columns; ``add_rows`` as they come, then ``print``."""

    def __init__(self, console: Console, columns: Sequence[tuple[str, Justify]]) -> None:
        self.console = console
        self.columns = tuple(columns)
        self.rows: list[Sequence[str]] = []
        self._natural = [0] * len(self.columns)  # the widest cell of each column, header left out
        self._plain_ascii = [True] * len(self.columns)  # every cell so far plain printable ASCII
        self._texts: dict[str, Text] = {}  # what rich makes of a cell that is more than plain text
        self._whole_to_rich = False  # a cell rich would break over lines: rich prints the table

    def add_rows(self, rows: Sequence[Sequence[str]]) -> None:
        """Measured a column at a time: a column of plain printable text is one check over all its cells."""
        if not rows:
            return
        self.rows.extend(rows)
        for i, cells in enumerate(zip(*rows)):
            joined = "".join(cells)
            if joined.isprintable() and "[" not in joined and ":" not in joined:
                if joined.isascii():
                    widest = max(map(len, cells))
                else:
                    widest, self._plain_ascii[i] = max(map(cell_len, cells)), False
            else:
                widest, self._plain_ascii[i] = max(self._measure(cell) for cell in cells), False
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
        if self._whole_to_rich:
            console.print(self._rich_table(self.rows))
            return
        widths = self._widths()
        if widths is None:
            console.print(self._rich_table(self.rows))
            return
        last = len(self.columns) - 1
        pads = [(0 if i == 0 else 1, 0 if i == last else 1) for i in range(len(self.columns))]
        styled = console.is_terminal and console.color_system is not None
        out = [self._header(widths)]
        columns: list[list[str]] = []
        for i, cells in enumerate(zip(*self.rows)):
            columns.append(self._column(cells, self.columns[i][1], widths[i], pads[i], i, styled))
        out.extend("".join(parts) for parts in zip(*columns))
        console.file.write("\n".join(out) + "\n")
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

    def _column(self, cells: Sequence[str], justify: Justify, width: int, pad: tuple[int, int], index: int,
                styled: bool) -> list[str]:
        left, right = " " * pad[0], " " * pad[1]
        if self._plain_ascii[index] and self._natural[index] <= width:  # the common case: one format a cell
            if justify == "left":
                return list(map(f"{left}{{:<{width}}}{right}".format, cells))
            return list(map(f"{left}{{:>{width}}}{right}".format, (c.rstrip() for c in cells)))
        texts = self._texts
        out = []
        rendered: dict[str, str] = {}
        for cell in cells:
            text = texts.get(cell)
            if text is not None:
                if styled and text.spans:
                    if (done := rendered.get(cell)) is None:
                        done = rendered[cell] = self._styled(index, cell, width)
                    out.append(done)
                    continue
                cell = text.plain
            out.append(left + _fit(cell, width, justify) + right)
        return out

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
