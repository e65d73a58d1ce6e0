"""A bulk action under way, and the line that says how far it has got while its one request runs.

The daemon writes a bulk action in transactions of a few hundred rows, each sending its deltas on the
stream, so the dashboard can count, among the rows it asked for, those that already show the new state
(a disable: disabled; a pause: paused). Rows that had that state before count too: the line says what
the stream shows, not what this request changed. A retry or an assign shows nothing in the rows'
states, so its line says only how long it has been running.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tgdaemon.display import plural
from tgtui.model import FleetModel

SHOW_AFTER_SECONDS = 0.5  # a request answered sooner needs no progress line: its notification comes at once
ING = {"disable": "disabling", "enable": "enabling", "retry": "retrying", "assign": "assigning", "pause": "pausing",
       "resume": "resuming"}

Done = Callable[[dict[str, Any]], bool]
SHOWS: dict[str, Done] = {
    "disable": lambda account: account["state"] == "disabled",
    "enable": lambda account: account["state"] != "disabled",
    "pause": lambda quota: bool(quota["paused"]),
    "resume": lambda quota: not quota["paused"],
}


@dataclass
class Running:
    action: str
    kind: str  # "account" or "quota"
    ids: list[int]
    started: float = field(default_factory=time.monotonic)

    def shown(self, model: FleetModel) -> int | None:
        """How many of the rows asked for show the new state now (None: the action changes no state shown)."""
        done = SHOWS.get(self.action)
        if done is None:
            return None
        rows = model.accounts if self.kind == "account" else model.quotas
        return sum(1 for i in self.ids if (row := rows.get(i)) is not None and done(row))

    def line(self, model: FleetModel) -> str | None:
        elapsed = time.monotonic() - self.started
        if elapsed < SHOW_AFTER_SECONDS:
            return None
        text = f"{ING.get(self.action, self.action)} {plural(len(self.ids), self.kind)}…"
        if (shown := self.shown(model)) is not None:
            text += f" {shown:,} of {len(self.ids):,} show it"
        return f"{text} ({elapsed:.0f} s)"
