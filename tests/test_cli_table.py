"""The CLI's listing table prints what rich's Table printed, character for character and escape for escape:
in a pipe (no colour, never wrapped) and in colour terminals of every width, including tables wider than the
terminal (rich's shrinking and its ellipses), markup and emoji codes in cells, wide characters, and texts
rich breaks over lines."""

from __future__ import annotations

import io
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.table import Table

from tgdaemon.cli.table import ListingTable

COLUMNS = (("ID", "right"), ("LABEL", "left"), ("STATE", "left"), ("SETUP", "right"), ("REASON", "left"))
STATES = ["[green]ready[/]", "[cyan]busy[/]", "[yellow]cooldown[/]", "[red]disabled[/]", "[dim]inactive[/]"]
CELLS = st.sampled_from(["", "sim-0001", "a long label for a long table", "6/8", "probe", "x ", " y", "漢字ラベル",
                         "😀 face", "[bold]b[/]", "[x]", ":smile: day", "bench: a reason", "tab\there", "two\nlines",
                         "café", "…", "[link=https://example.org]site[/link]", "a\u200db", "\x1b[31m"])
LINK_ID = re.compile(r"id=\d+;")  # rich numbers every hyperlink it prints anew

TEXT = CELLS | st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


def pipe() -> Console:
    """As ``tgdaemon.cli.output.console()`` makes it when stdout is not a terminal."""
    return Console(file=io.StringIO(), highlight=False, soft_wrap=True, width=100_000)


def terminal(width: int, colors: str = "truecolor") -> Console:
    return Console(file=io.StringIO(), highlight=False, force_terminal=True, color_system=colors,  # type: ignore[arg-type]
                   width=width)


def rich_prints(console: Console, rows: list[list[str]]) -> str:
    table = Table(box=None, pad_edge=False)
    for name, justify in COLUMNS:
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*row)
    console.print(table)
    return console.file.getvalue()  # type: ignore[attr-defined]


def we_print(console: Console, rows: list[list[str]], pages: int = 1) -> str:
    table = ListingTable(console, COLUMNS)  # type: ignore[arg-type]
    step = max(1, len(rows) // pages)
    for start in range(0, len(rows), step):  # rows come a page at a time, as the CLI receives them
        chunk = rows[start:start + step]
        table.add_columns([[row[i] for row in chunk] for i in range(len(COLUMNS))])
    table.print()
    return console.file.getvalue()  # type: ignore[attr-defined]


def same(make: object, rows: list[list[str]], pages: int = 1) -> None:
    try:
        expected = rich_prints(make(), rows)  # type: ignore[operator]
    except Exception as exc:  # rich refuses some markup ("[/]" closing nothing): so must we, the same way
        with pytest.raises(type(exc)):
            we_print(make(), rows, pages)  # type: ignore[operator]
        return
    assert LINK_ID.sub("id=;", we_print(make(), rows, pages)) == LINK_ID.sub("id=;", expected)


def fleet_rows(n: int, seed: int = 3) -> list[list[str]]:
    rnd = random.Random(seed)
    return [[str(i), f"sim-{i:05d}", rnd.choice(STATES), rnd.choice(["3/8", "8/8", "probe"]),
             rnd.choice(["", "", "FLOOD_WAIT_60", "sim card returned"])] for i in range(1, n + 1)]


@pytest.mark.parametrize("make", [pipe, lambda: terminal(200), lambda: terminal(60), lambda: terminal(30, "256"),
                                  lambda: terminal(45, "standard")], ids=["pipe", "wide", "narrow", "narrower",
                                                                          "standard"])
def test_a_fleet_prints_as_rich_printed_it(make: object) -> None:
    same(make, fleet_rows(300), pages=3)


@pytest.mark.parametrize("make", [pipe, lambda: terminal(120)], ids=["pipe", "terminal"])
def test_an_empty_listing_is_its_header(make: object) -> None:
    same(make, [])


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.lists(TEXT, min_size=len(COLUMNS), max_size=len(COLUMNS)), max_size=6),
       width=st.sampled_from([0, 20, 37, 80, 133]), pages=st.integers(min_value=1, max_value=3))
def test_any_cells_print_as_rich_printed_them(rows: list[list[str]], width: int, pages: int) -> None:
    same(pipe if width == 0 else (lambda: terminal(width)), rows, pages)
