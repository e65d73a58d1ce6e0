"""The header line (totals of the fleet) and the banner: "daemon offline", or the daemon's "store down"."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.widgets import Static

from tgdaemon.display import STATE_STYLE, duration
from tgtui.model import FleetModel

VIEWS = ("accounts", "quotas", "tasks", "events", "pulse", "nodes")
WITH_PROXIES = ("accounts", "quotas", "tasks", "events", "pulse", "proxies", "nodes")


def views(model: FleetModel, current: str) -> tuple[str, ...]:
    """The views to go round: the proxies view where the fleet has proxies (or it is the one shown)."""
    return WITH_PROXIES if model.proxies or current == "proxies" else VIEWS


class FleetHeader(Static):
    DEFAULT_CSS = "FleetHeader { height: auto; background: $panel; padding: 0 1; }"

    def paint(self, model: FleetModel, now: float, view: str, offline: bool) -> None:
        parts: list[str | tuple[str, str]] = []
        if model.node:  # the node this dashboard talks to (any node shows the whole fleet): first, never wrapped off
            parts += [(model.node, "bold"), " │ "]
        for name in views(model, view):
            parts += [(f"{name.title()}", "reverse bold" if name == view else "dim"), " "]
        status = model.status
        down: list[str | tuple[str, str]] = [" │ ", ("store DOWN", "bold red")] if model.store_down else []
        if not status:
            self.update(Text.assemble(*parts, "│ connecting…", *down))
            return
        parts.append("│")
        if model.loading is not None:  # in place of the counts, which would count only the rows in so far
            loaded, expected = model.loading.accounts, model.loading.expected
            of = f" of {expected:,}" if expected >= loaded else ""
            parts += [" ", (f"loading {loaded:,}{of} accounts…", "bold yellow")]
        else:
            for state, n in model.counts(now).items():
                parts += [(f" {state} ", STATE_STYLE[state]), str(n)]
        parts += [f" │ {status.get('tasks_per_minute', 0)} tasks/min │ {model.open_quotas(now)} quotas open │ "]
        parts += [f"v{status['version']} " + ("offline" if offline else f"up {duration(model.uptime())}"), *down]
        self.update(Text.assemble(*parts))


class OfflineBanner(Static):
    DEFAULT_CSS = """
    OfflineBanner { height: auto; background: $error; color: $text; padding: 0 1; display: none; }
    """

    def paint(self, offline_for: float | None, socket_path: Path, store_down: str | None = None) -> None:
        self.display = offline_for is not None or store_down is not None
        if offline_for is not None:
            self.update(f"daemon offline for {duration(offline_for)} — reconnecting to {socket_path}")
        elif store_down is not None:
            self.update(f"store down: {store_down} — the daemon takes no work and retries until it is back")
