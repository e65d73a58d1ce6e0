"""Columns, filtering and sorting of a table's rows, apart from any widget.

A table is a list of ``Column``s over plain dicts (an account, a quota, an
event). ``RowSet`` turns the model's rows into the displayed order; the
widget only draws the rows it is asked for, so 10,000 rows cost one filter and
one sort per repaint, never a widget per cell.

At 50,000 rows a filter keystroke must answer in well under 100 ms, so the text
a filter searches is made once per row and kept (``RowSet.warm`` makes it while
the dashboard is idle): the model replaces a row's dict whole on each delta, so
an entry is valid exactly while it belongs to the same dict. A filter that only
grows (one more character typed) narrows the rows shown instead of searching
them all again.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
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
    ``plain`` gives the text without styling (default: the cell's, made plain), for a
    column that filters often over many rows. ``cached`` False: its text depends on
    more than its row and the clock (the model's measurements, the connected node), so
    the filter must not keep it.
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
    plain: Callable[[Row, float], str] | None = None
    cached: bool = True

    def text(self, row: Row, now: float) -> str:
        if self.plain is not None:
            return self.plain(row, now)
        value = self.cell(row, now)
        return value.plain if isinstance(value, Text) else value

    @property
    def kept(self) -> bool:
        """Whether the filter may keep this column's text for as long as the row is the same dict."""
        return self.cached and not self.timed

    def sort_value(self, row: Row, now: float) -> Any:
        return self.sort(row, now) if self.sort else self.text(row, now).lower()


ARROW = 2  # " ▲": the sort arrow after the sorted column's title


def layout(columns: Iterable[Column], width: int, gap: int = 1, *, sort: str | None = None,
           wants: dict[str, int] | None = None) -> list[tuple[Column, int]]:
    """The columns that fit in ``width`` and the width of each: drop the most droppable first.

    The sorted column (``sort``) is at least as wide as its title and the arrow, so the arrow never cuts
    the title. ``wants``: the widest text of each column in the rows shown (absent: unknown). The width
    left over goes first to the columns whose text is cut, shared evenly up to what each needs, then to
    the flex columns that have something to show; a flex column empty in every shown row keeps only its
    minimum. When that is not enough, a column whose texts and title are all narrower than its minimum
    lends the blank cells to the cut ones: a wide blank column never sits beside a cut one.
    """
    def least(c: Column) -> int:
        return max(c.width, len(c.title) + ARROW) if c.key == sort else c.width

    def title(c: Column) -> int:
        return len(c.title) + (ARROW if c.key == sort else 0)

    shown = list(columns)
    while len(shown) > 1 and sum(map(least, shown)) + gap * (len(shown) - 1) > width:
        worst = max(shown, key=lambda c: c.drop)
        if worst.drop == 0:
            break
        shown.remove(worst)
    widths = {c.key: least(c) for c in shown}
    spare = max(0, width - sum(widths.values()) - gap * (len(shown) - 1))
    if wants is None:
        grow = [c for c in shown if c.flex]
    else:
        cut = [c for c in shown if wants.get(c.key, 0) > widths[c.key]]
        short = sum(wants[c.key] - widths[c.key] for c in cut) - spare
        def blank(c: Column) -> int:
            return widths[c.key] - max(wants.get(c.key, 0), title(c))

        for c in sorted(shown, key=blank, reverse=True):  # the blankest lends first
            lend = min(short, blank(c))
            if lend > 0:
                widths[c.key] -= lend
                spare += lend
                short -= lend
        while spare and cut:  # even shares, each up to what its text needs
            share = max(1, spare // len(cut))
            for c in list(cut):
                step = min(share, wants[c.key] - widths[c.key], spare)
                widths[c.key] += step
                spare -= step
                if widths[c.key] >= wants[c.key]:
                    cut.remove(c)
                if not spare:
                    break
        grow = [c for c in shown if c.flex and wants.get(c.key, 0) > 0]
    for n, c in enumerate(grow):
        widths[c.key] += spare // len(grow) + (1 if n < spare % len(grow) else 0)
    return [(c, widths[c.key]) for c in shown]


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


def narrows(old: tuple[list[str], dict[str, str]], new: tuple[list[str], dict[str, str]]) -> bool:
    """Whether every row the ``new`` filter keeps is one the ``old`` kept (so the new can search the old's rows).

    An old word must be inside a new word or a new column value (either is then in the row's text); an old
    ``column:value`` must be inside the new value for the same column."""
    (old_words, old_fields), (new_words, new_fields) = old, new
    found = [*new_words, *new_fields.values()]
    return (all(any(w in n for n in found) for w in old_words)
            and all(k in new_fields and v in new_fields[k] for k, v in old_fields.items()))


# How long a filter may go on narrowing the rows it last searched whole: that search read the clock
# then, so what a countdown or an expiring state showed is at most this old (the view refreshes its
# timed order as often).
NARROW_SECONDS = 1.0


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
        self._index: dict[Any, int] | None = {}  # None: not made since the last rebuild
        self._kept = [c for c in columns if c.kept]  # the columns whose text a row's entry holds
        self._plain = [c.plain or c.text for c in self._kept]
        self._slot = {c.key: n for n, c in enumerate(self._kept)}
        self._live = [c for c in columns if not c.kept]
        self._texts: dict[Any, tuple[Row, list[str], str]] = {}  # key -> (the row's dict, kept texts, their join)
        self._last: tuple[Any, str, str, bool, float] | None = None  # version, filter, sort, desc, when searched
        self._warming: tuple[Any, Iterator[Row]] | None = None

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

    def rebuild(self, rows: Iterable[Row], now: float, version: Any = None,
                changed: Callable[[Any], list[Row] | None] | None = None) -> None:
        """``version``: what the caller knows of ``rows`` (the model's revision). At the version of the last
        rebuild, a filter that only grew narrows the rows shown rather than searching them all again. At a
        newer one, under a filter, ``changed(last version)`` (the rows changed since, or None when unknown) lets
        the rows shown take in those alone: a tick of 1,000 deltas at 50,000 rows tests and places 1,000 rows
        instead of testing 50,000.
        Either keeps the order of the last whole rebuild: one made at most NARROW_SECONDS ago where the clock
        changes what the rows show (``timed``), any otherwise."""
        wanted = parse_filter(self.filter)
        words, fields = wanted
        last = self._last
        recent = (version is not None and last is not None and (last[2], last[3]) == (self.sort, self.desc)
                  and (0 <= now - last[4] < NARROW_SECONDS or not self.timed))  # an order the clock cannot age
        if recent and last is not None and last[0] == version and last[1] != self.filter and narrows(
                parse_filter(last[1]), wanted):
            self.rows = list(filter(self._matcher(now, words, fields), self.rows))  # still in order
            self._last = (version, self.filter, self.sort, self.desc, last[4])
            self._index = None
            return
        # Only under a filter: there a whole rebuild tests every row (a call per row), and the rows shown may be few;
        # unfiltered, one C sort of every row by the key costs no more than taking a tick's rows in.
        if (recent and last is not None and last[0] != version and last[1] == self.filter and changed is not None
                and (words or fields)):
            moved = changed(last[0])
            if moved is not None and len(moved) <= len(self.rows) // 4 + 100:
                self._take_in(moved, now, last[4], words, fields)
                self._last = (version, self.filter, self.sort, self.desc, last[4])
                self._index = None
                return
        picked: Iterable[Row] = rows
        if words or fields:
            picked = filter(self._matcher(now, words, fields), rows)
        # Two stable sorts, by the key and then by the column, rather than one by (column, key) tuples: the
        # first is done in C (and on the model's rows, nearly in key order already, is little more than a pass),
        # and the column that is the key needs no second one.
        self.rows = sorted(picked, key=itemgetter(self.key), reverse=self.desc)
        value = self._sort_value(now)
        if value is not None:
            self.rows.sort(key=value, reverse=self.desc)
        self._last = (version, self.filter, self.sort, self.desc, now)
        self._index = None
        if len(self._texts) > 2 * len(self.rows) + 1000 and not (words or fields):
            self._prune()

    def _sort_value(self, at: float) -> Callable[[Row], Any] | None:
        """The sort column's value of a row at ``at``; None for the key column (the key alone orders it)."""
        column = self.columns[self.sort]
        if column.key == self.key:
            return None
        if column.sort is not None:
            sort_value = column.sort
            return lambda r: sort_value(r, at)
        if column.key in self._slot:
            slot = self._slot[column.key]
            return lambda r: self._entry(r)[1][slot].lower()
        return lambda r: column.sort_value(r, at)

    def _take_in(self, moved: list[Row], now: float, ordered_at: float, words: list[str],
                 fields: dict[str, str]) -> None:
        """The rows shown, with ``moved`` (new dicts of their keys) in place of what they were: each placed by a
        binary search among the others, in the order of ``ordered_at`` (the last whole rebuild's clock).

        Searched in ascending order (a descending table is reversed for it, a copy of pointers), so the
        search runs in C (its key in Python only for a column that is not the key)."""
        key, name = itemgetter(self.key), self.key
        gone = {r[name] for r in moved}
        base = [r for r in self.rows if r[name] not in gone]
        if self.desc:
            base.reverse()
        matches = self._matcher(now, words, fields) if words or fields else None
        fresh = sorted((r for r in moved if matches is None or matches(r)), key=key)
        value = self._sort_value(ordered_at)
        order: Callable[[Row], Any] = key
        if value is not None:
            fresh.sort(key=value)
            order = lambda row: (value(row), row[self.key])  # noqa: E731 - the search's key, made once
        out: list[Row] = []
        done = 0
        for row in fresh:
            at = bisect_left(base, order(row), done, key=order)
            out += base[done:at]
            out.append(row)
            done = at
        out += base[done:]
        if self.desc:
            out.reverse()
        self.rows = out

    def warm(self, rows: Iterable[Row], version: Any, limit: int) -> bool:
        """Make the search text of up to ``limit`` rows that have none (or an old one); True once every row has.

        Called while the dashboard is idle, so the first keystroke of a filter finds the text of 50,000 rows
        made (a few µs a row) rather than making it then. A pass goes on to its end across calls even while
        ``version`` moves (so steady deltas cannot starve its last rows); a pass that began at an older
        version is followed by another, whose rows already warm cost a lookup each."""
        if self._warming is None:
            self._warming = (version, iter(list(rows)))  # a copy: deltas change the model's dict between calls
        n = 0
        for n, row in enumerate(islice(self._warming[1], limit), 1):
            self._entry(row)
        if n == limit:
            return False
        if self._warming[0] == version:
            return True
        self._warming = (version, iter(list(rows)))
        return False

    @property
    def index(self) -> dict[Any, int]:
        """Each shown key's position: made when first asked after a rebuild (a tick need not pay for it)."""
        if self._index is None:
            self._index = dict(zip(map(itemgetter(self.key), self.rows), range(len(self.rows))))
        return self._index

    def position(self, key: Any) -> int | None:
        """Where the row of ``key`` is shown, without making the whole index (a scan in C, a third of its cost)."""
        if self._index is not None:
            return self._index.get(key)
        try:
            return list(map(itemgetter(self.key), self.rows)).index(key)
        except ValueError:
            return None

    def _prune(self) -> None:
        """Forget the entries of rows gone from the model (a resync dropped them)."""
        shown = self.index
        self._texts = {k: e for k, e in self._texts.items() if k in shown}

    def _entry(self, row: Row) -> tuple[Row, list[str], str]:
        """The row's kept texts and their join, lower-cased: made once per dict the model holds for it."""
        key = row[self.key]
        entry = self._texts.get(key)
        if entry is None or entry[0] is not row:
            texts = [text(row, 0.0) for text in self._plain]
            entry = self._texts[key] = (row, texts, " ".join(texts).lower())
        return entry

    def _matcher(self, now: float, words: list[str], fields: dict[str, str]) -> Callable[[Row], bool]:
        """A test of one row, made once per rebuild: a filter on one clock-driven column (``state:cooldown``) reads
        only that column, never the row's kept texts."""
        kept = [(self._slot[k], v) for k, v in fields.items() if k in self._slot]
        live = [(self.columns[k].plain or self.columns[k].text, v) for k, v in fields.items() if k not in self._slot]
        texts_of = [c.plain or c.text for c in self._live]
        if not kept and not words and len(live) == 1:
            text, wanted = live[0]
            return lambda row: wanted in text(row, now).lower()

        def matches(row: Row) -> bool:
            for text, wanted in live:
                if wanted not in text(row, now).lower():
                    return False
            _, texts, hay = self._entry(row)
            for slot, wanted in kept:
                if wanted not in texts[slot].lower():
                    return False
            clocked = None  # the clock-driven columns' text, made only for a word the kept texts do not have
            for word in words:
                # a word has no space in it, so it is in the whole row's text exactly when it is in one column's
                if word not in hay:
                    if clocked is None:
                        clocked = " ".join([text(row, now) for text in texts_of]).lower()
                    if word not in clocked:
                        return False
            return True

        return matches
