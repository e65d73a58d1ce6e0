"""The accounts view: every account of the fleet, with its state, countdown and setup progress."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType

from tgdaemon.display import HEALTH_STYLE, STATE_STYLE, duration
from tgtui.model import effective_state
from tgtui.screens.base import FleetScreen
from tgtui.table import Column, Row, RowSet
from tgtui.widgets.table import MARK_BINDINGS, LineTable


def _state(row: Row, now: float) -> Text:
    state = effective_state(row, now)
    return Text(state, style=STATE_STYLE.get(state, ""))


def _cooldown_left(row: Row, now: float) -> float:
    until = row.get("_until")
    return until - now if until is not None and until > now and row["state"] == "cooldown" else 0.0


def _cooldown(row: Row, now: float) -> str:
    left = _cooldown_left(row, now)
    return duration(math.ceil(left)) if left else ""  # rounded up: never "0s" while still cooling down


def _setup(row: Row, now: float) -> str:
    return "probe" if row["is_probe"] else f"{row['setup']['done']}/{row['setup']['total']}"


def _setup_sort(row: Row, now: float) -> tuple[int, float]:
    done, total = row["setup"]["done"], row["setup"]["total"]
    return (1, 0.0) if row["is_probe"] else (0, done / total if total else 1.0)


def _health(row: Row, now: float) -> Text:
    """What the last health check found; empty when the account was never checked."""
    health = row.get("health") or ""
    return Text(health, style=HEALTH_STYLE.get(health, ""))


def _owner(row: Row, now: float) -> Text:
    """The node that holds its connection; pinned ones are marked, and a pin elsewhere is named."""
    owner, pinned = row.get("owner"), row.get("pinned_node")
    held = Text(owner) if owner else Text("-", style="dim")
    if pinned is None:
        return held
    return Text.assemble(held, ("*" if pinned == owner else f"→{pinned}", "magenta"))


def _owner_plain(row: Row, now: float) -> str:
    owner, pinned = row.get("owner"), row.get("pinned_node")
    return (owner or "-") + ("" if pinned is None else "*" if pinned == owner else f"→{pinned}")


ACCOUNT_COLUMNS = [
    Column("id", "ID", 6, lambda r, n: str(r["id"]), sort=lambda r, n: r["id"], right=True),
    Column("label", "Label", 16, lambda r, n: r["label"]),
    Column("phone", "Phone", 13, lambda r, n: r["phone_masked"] or "", drop=4),
    Column("state", "State", 8, _state, sort=effective_state, timed=True, plain=effective_state),  # no Text per row
    Column("cooldown", "Cooldown", 8, _cooldown, sort=_cooldown_left, timed=True, right=True, plain=_cooldown),
    Column("setup", "Setup", 5, _setup, sort=_setup_sort, right=True),
    Column("health", "Health", 7, _health, drop=5,  # `/` health:limited filters by it
           plain=lambda r, n: r.get("health") or ""),
    Column("executor", "Executor", 8, lambda r, n: r["executor"] or "", drop=3),
    Column("owner", "Owner", 12, _owner, drop=2, plain=_owner_plain),
    Column("proxy", "Proxy", 26, lambda r, n: r.get("proxy") or "—", drop=5),  # its own; —: none
    Column("error", "Last error", 12, lambda r, n: r["last_error_code"] or "", flex=True, drop=1),
]


class AccountsScreen(FleetScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "mark", "Mark", key_display="␣"),
        *MARK_BINDINGS,
        Binding("r", "app.retry", "Retry"),
        Binding("d", "app.disable", "Disable"),
        Binding("e", "app.enable", "Enable"),
    ]
    MARKABLE = True
    NOUN = "account"
    EMPTY = "no accounts (or none match the filter)"

    def make_rowset(self) -> RowSet:
        return RowSet(ACCOUNT_COLUMNS)

    def rows(self) -> Iterable[Row]:
        return self.fleet.model.accounts.values()

    def rev(self) -> int:
        return self.fleet.model.accounts_rev

    def changed(self, since: int) -> list[Row] | None:
        return self.fleet.model.accounts_changed(since)

    def on_line_table_chosen(self, event: LineTable.Chosen) -> None:
        self.fleet.open_account(event.key)
