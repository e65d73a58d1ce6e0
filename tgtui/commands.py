"""Command mode (``:`` as in k9s) and the palette's list of every action, apart from the widgets that show them.

A command is one line: a view's name (``:quotas``), ``:filter TEXT``, ``:sort COLUMN`` (``!`` or ``desc``
after it for descending), ``:help``, ``:q``/``:quit``. The view names are the app's modes, so a view added
to ``FleetApp.MODES`` is a command at once. A mistake is answered with one line that names it and what
exists. The palette lists every action in every view; one that does not apply where the operator is stays
listed, its help says where it works, and choosing it says so rather than the palette finding nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual.app import SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.widgets import Input

from tgtui.table import Column, RowSet

if TYPE_CHECKING:
    from tgtui.app import FleetApp
    from tgtui.screens.base import FleetScreen

QUIT = ("q", "quit")
DESCENDING = ("!", "desc")
ASCENDING = ("asc",)


def usage(views: Iterable[str]) -> str:
    return ", ".join([*views, "filter TEXT", "sort COLUMN[!]", "help", "quit"])


def suggestions(views: Iterable[str], columns: Iterable[Column]) -> list[str]:
    """What the prompt completes, most wanted first (a view's name before ``quit`` for ``q``)."""
    return [*views, "filter ", *(f"sort {c.key}" for c in columns), "help", "quit"]


def find_column(rowset: RowSet, name: str) -> Column | None:
    """A column by its key or its title, in any case."""
    name = name.strip().lower()
    for column in rowset.columns.values():
        if name in (column.key.lower(), column.title.lower()):
            return column
    return None


def parse_sort(rowset: RowSet, words: list[str]) -> tuple[Column, bool] | str:
    """``["cooldown", "desc"]`` or ``["cooldown!"]`` -> (the column, descending); else a one-line complaint."""
    desc = False
    if words and words[-1].lower() in (*DESCENDING, *ASCENDING):
        desc = words.pop().lower() in DESCENDING
    elif words and words[-1].endswith("!"):
        words[-1], desc = words[-1][:-1], True
    name = " ".join(words)
    columns = ", ".join(rowset.columns)
    if not name:
        return f"sort: which column? columns: {columns}"
    column = find_column(rowset, name)
    if column is None:
        return f"sort: no column {name!r} here; columns: {columns}"
    return column, desc


def run(app: FleetApp, screen: Screen[Any], line: str) -> str | None:
    """Carry out one command line; a one-line complaint when it cannot be, else None. ``filter`` and ``sort``
    need a view with rows (a ``FleetScreen``); the pulse view takes the others."""
    text = line.strip().removeprefix(":").strip()
    verb, _, rest = text.partition(" ")
    verb = verb.lower()
    if not verb:
        return None
    if verb in app.MODES:
        app.switch_mode(verb)
    elif verb in ("filter", "sort") and not hasattr(screen, "rowset"):
        return f"{verb}: this view has no rows to {verb}; a list view has (:accounts, :tasks…)"
    elif verb == "filter":
        return cast("FleetScreen", screen).set_filter(rest.strip())
    elif verb == "sort":
        table = cast("FleetScreen", screen)
        found = parse_sort(table.rowset, rest.split())
        if isinstance(found, str):
            return found
        table.set_sort(found[0].key, found[1])
    elif verb == "help":
        app.action_help()
    elif verb in QUIT:
        app.exit()
    else:
        return f"unknown command {verb!r}; commands: {usage(app.MODES)}"
    return None


class CommandInput(Input):
    """The ``:`` prompt: completes from the commands; ``tab`` takes the completion shown."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("tab", "complete", "Complete", show=False)]

    def __init__(self, words: list[str], **kwargs: Any) -> None:
        super().__init__(suggester=SuggestFromList(words, case_sensitive=False), **kwargs)

    def action_complete(self) -> None:
        if self._suggestion:
            self.value = self._suggestion
            self.cursor_position = len(self.value)


@dataclass(frozen=True)
class Action:
    """A palette entry: what it does, and where it works (as the help of an entry that does not apply here)."""

    title: str
    help: str
    where: str  # "accounts view": said when it does not apply
    command: str  # how to get there: ":accounts"
    applies: Callable[[Screen[Any]], bool]
    run: Callable[[FleetApp, Any], None]  # given only a screen ``applies`` accepted


def palette(app: FleetApp, screen: Screen[Any], actions: Iterable[Action]) -> Iterator[SystemCommand]:
    """Every action, here or not: one that does not apply says where it does, in its help and when chosen."""
    for action in actions:
        if action.applies(screen):
            yield SystemCommand(action.title, action.help, partial(action.run, app, screen))
        else:
            why = f"{action.where} only: open it with {action.command}"
            yield SystemCommand(action.title, f"{why} — {action.help}",
                                partial(app.notify, f"{action.title}: {why}", severity="warning"))
