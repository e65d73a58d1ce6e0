"""Columns, filtering and sorting of a table's rows, apart from any widget.

A table is a list of ``Column``s over plain dicts (an account, a quota, an
event). ``RowSet`` turns the model's rows into the displayed order; the
widget only draws the rows it is asked for, so 10,000 rows cost one filter and
one sort per repaint, never a widget per cell.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from rich.text import Text

Row = dict[str, Any]
Cell = Callable[[Row, float], str | Text]


@dataclass(frozen=True)
class Column:
    """One column. ``width`` is the minimum; ``flex`` columns share what is left.

    ``drop`` orders what goes first on a narrow terminal (higher drops first, 0 never).
    ``sort`` gives the sort value (default: the cell's text); ``timed`` marks a
    column whose text changes with the clock, so its order is refreshed each second.
    """

    key: str
    title: str
    width: int
    cell: Cell
    flex: bool = False
    drop: int = 0
    sort: Callable[[Row, float], Any] | None = None
    timed: bool = False
    right: bool = False

    def text(self, row: Row, now: float) -> str:
        value = self.cell(row, now)
        return value.plain if isinstance(value, Text) else value

    def sort_value(self, row: Row, now: float) -> Any:
        return self.sort(row, now) if self.sort else self.text(row, now).lower()


def layout(columns: Iterable[Column], width: int, gap: int = 1) -> list[tuple[Column, int]]:
    """The columns that fit in ``width`` and the width of each: drop the most droppable first."""
    shown = list(columns)
    while len(shown) > 1 and sum(c.width for c in shown) + gap * (len(shown) - 1) > width:
        worst = max(shown, key=lambda c: c.drop)
        if worst.drop == 0:
            break
        shown.remove(worst)
    spare = max(0, width - sum(c.width for c in shown) - gap * (len(shown) - 1))
    flex = [c for c in shown if c.flex]
    out = []
    for column in shown:
        extra = 0
        if column.flex and flex:
            extra = spare // len(flex) + (1 if flex.index(column) < spare % len(flex) else 0)
        out.append((column, column.width + extra))
    return out


def parse_filter(text: str) -> tuple[list[str], dict[str, str]]:
    """``"sim-00 state:cooldown"`` -> (free words, {column key: wanted}); all lower case."""
    words: list[str] = []
    fields: dict[str, str] = {}
    for token in text.lower().split():
        key, sep, value = token.partition(":")
        if sep and key and value:
            fields[key] = value
        else:
            words.append(token)
    return words, fields


class RowSet:
    """The displayed order of a table: filtered, sorted, ties broken by ``key``; keeps the index of every key.

    A column whose ``key`` is the table's key (the accounts' ``id``, the nodes' ``name``) sorts as the key does.
    """

    def __init__(self, columns: list[Column], key: str = "id", sort: str | None = None, desc: bool = False) -> None:
        self.columns = {c.key: c for c in columns}
        self.key = key
        self.sort = sort or columns[0].key
        self.desc = desc
        self.filter = ""
        self.rows: list[Row] = []
        self.index: dict[Any, int] = {}

    def check_filter(self, text: str) -> str | None:
        """A one-line complaint about a filter, or None when it can be applied."""
        _, fields = parse_filter(text)
        unknown = sorted(set(fields) - set(self.columns))
        if unknown:
            return f"unknown column {unknown[0]!r} in the filter; columns: {', '.join(self.columns)}"
        return None

    def cycle_sort(self) -> None:
        keys = list(self.columns)
        self.sort = keys[(keys.index(self.sort) + 1) % len(keys)]

    @property
    def timed(self) -> bool:
        """Whether the order depends on the clock (a countdown or a state that expires)."""
        words, fields = parse_filter(self.filter)
        return self.columns[self.sort].timed or any(self.columns[k].timed for k in fields) or (
            bool(words) and any(c.timed for c in self.columns.values()))

    def rebuild(self, rows: Iterable[Row], now: float) -> None:
        words, fields = parse_filter(self.filter)
        picked: Iterable[Row] = rows
        if words or fields:
            picked = [r for r in rows if self._matches(r, now, words, fields)]
        column = self.columns[self.sort]
        # Two stable sorts, by the key and then by the column, rather than one by (column, key) tuples: the
        # first is done in C, and the column that is the key needs no second one (100,000 rows by id: 8 ms,
        # not 120).
        self.rows = sorted(picked, key=itemgetter(self.key), reverse=self.desc)
        if column.key != self.key:
            self.rows.sort(key=lambda r: column.sort_value(r, now), reverse=self.desc)
        self.index = dict(zip(map(itemgetter(self.key), self.rows), range(len(self.rows))))

    def _matches(self, row: Row, now: float, words: list[str], fields: dict[str, str]) -> bool:
        for name, wanted in fields.items():
            if wanted not in self.columns[name].text(row, now).lower():
                return False
        if words:
            hay = " ".join(c.text(row, now) for c in self.columns.values()).lower()
            return all(w in hay for w in words)
        return True
