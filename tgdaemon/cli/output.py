"""What admin commands print: rich tables for people, JSON for scripts."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from tgdaemon import display
from tgdaemon.cli.table import Justify
from tgdaemon.display import HEALTH_STYLE, STATE_STYLE, duration
from tgdaemon.wire import Account


def console() -> Console:
    """Wrapped to the terminal for people; never cut or wrapped when piped into another program."""
    if sys.stdout.isatty():
        return Console(highlight=False)
    return Console(highlight=False, soft_wrap=True, width=100_000)


def print_json(data: Any) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(data), indent=2).decode() + "\n")


def answer(args: argparse.Namespace, data: Any, text: str) -> None:
    """A command's answer: the daemon's (or the command's) data under --json, else the line for people."""
    if args.json:
        print_json(data)
    else:
        print(text)


def until(iso_time: str | None) -> str:
    """'in 4m 10s' for a future ISO time; empty when none or past."""
    if not iso_time:
        return ""
    left = datetime.fromisoformat(iso_time.replace("Z", "+00:00")) - datetime.now(UTC)
    return duration(left.total_seconds()) if left.total_seconds() > 0 else ""


def ago(iso_time: str | None, past: str | None = None, empty: str = "") -> str:
    """An ISO time against now, as the dashboard shows it (``in 4m``, ``3h ago``): a table is read by a person;
    ``--json`` keeps the ISO time."""
    return display.relative_iso(iso_time, time.time(), past, empty)


def times_in(text: str | None) -> str:
    """A daemon's sentence with its ISO times said against now (``cooldown ends in 4m``)."""
    return display.times_in(text, time.time())


def size(n_bytes: int) -> str:
    """1.5 GiB, 320.0 KiB: a database's size at a glance."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    value, i = float(n_bytes), 0
    while value >= 1024 and i < len(units) - 1:
        value, i = value / 1024, i + 1
    return f"{n_bytes} B" if i == 0 else f"{value:.1f} {units[i]}"


def table(*columns: str) -> Table:
    """A borderless table whose cells never wrap: the shape of every listing the CLI prints."""
    out = Table(box=None, pad_edge=False)
    for name in columns:
        out.add_column(name, no_wrap=True)
    return out


def owner(account: Account) -> str:
    """The node that holds it, and where it is pinned when that is another node (or none holds it yet)."""
    held = account.owner or "-"
    if account.pinned_node is None:
        return held
    return f"{held} (pinned)" if account.pinned_node == account.owner else f"{held} (pinned {account.pinned_node})"


ACCOUNT_COLUMNS: tuple[tuple[str, Justify], ...] = (
    ("ID", "right"), ("LABEL", "left"), ("PHONE", "left"), ("STATE", "left"), ("COOLDOWN", "left"),
    ("SETUP", "right"), ("HEALTH", "left"), ("EXECUTOR", "left"), ("OWNER", "left"), ("PROXY", "left"),
    ("LAST ERROR", "left"), ("REASON", "left"))


def account_columns(rows: Sequence[Account]) -> list[list[str]]:
    """The cells of ``accounts list``, a list per column (rich markup colours the state)."""
    styled = {state: f"[{style}]{state}[/]" for state, style in STATE_STYLE.items()}
    health_cell: dict[str | None, str] = {h: f"[{style}]{h}[/]" for h, style in HEALTH_STYLE.items()}
    return [[str(a.id) for a in rows], [a.label for a in rows], [a.phone_masked or "" for a in rows],
            [styled[a.state] for a in rows], [until(a.cooldown_until) if a.cooldown_until else "" for a in rows],
            ["probe" if a.is_probe else f"{a.setup.done}/{a.setup.total}" for a in rows],
            [health_cell.get(a.health, "") for a in rows],
            [a.executor for a in rows], [(a.owner or "-") if a.pinned_node is None else owner(a) for a in rows],
            [a.proxy or "-" for a in rows], [a.last_error_code or "" for a in rows],
            [a.disabled_reason or a.cooldown_reason or "" for a in rows]]
