"""The dashboard application: a live view of the fleet over the control socket."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from tgdaemon.errors import TgfleetError
from tgtui.client import ControlClient
from tgtui.model import FleetModel, effective_state, parse_time

STATE_STYLE = {"ready": "green", "busy": "cyan", "cooldown": "yellow", "disabled": "red", "inactive": "dim"}
# (key, label, width): fixed widths, so a value that changes later is never cut to the first one's width.
COLUMNS = (("id", "ID", 6), ("label", "Label", 16), ("phone", "Phone", 14), ("state", "State", 9),
           ("cooldown", "Cooldown", 9), ("setup", "Setup", 6), ("executor", "Executor", 10),
           ("error", "Last error", 24))
REPAINT_SECONDS = 0.25
RECONNECT_SECONDS = 1.0


def countdown(seconds: float) -> str:
    seconds = int(max(0, seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def cells(account: dict[str, Any], now: float) -> dict[str, Any]:
    state = effective_state(account, now)
    until = parse_time(account.get("cooldown_until"))
    return {
        "id": account["id"], "label": account["label"], "phone": account["phone_masked"] or "",
        "state": Text(state, style=STATE_STYLE.get(state, "")),
        "cooldown": countdown(until - now) if state == "cooldown" and until else "",
        "setup": "probe" if account["is_probe"] else f"{account['setup']['done']}/{account['setup']['total']}",
        "executor": account["executor"], "error": account["last_error_code"] or "",
    }


class FleetApp(App[None]):
    TITLE = "tgfleet"
    CSS = """
    #header { height: 1; background: $panel; padding: 0 1; }
    #offline { height: 1; background: $error; color: $text; padding: 0 1; display: none; }
    #offline.shown { display: block; }
    """
    BINDINGS = [Binding("q", "quit", "Quit")]

    def __init__(self, socket_path: Path) -> None:
        super().__init__()
        self.client = ControlClient(socket_path)
        self.model = FleetModel()
        self.offline_since: float | None = None

    def compose(self) -> ComposeResult:
        yield Static("connecting…", id="header")
        yield Static("", id="offline")
        table: DataTable[Any] = DataTable(id="accounts", cursor_type="row", zebra_stripes=True)
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.follow_stream()
        self.set_interval(REPAINT_SECONDS, self.repaint)

    async def on_unmount(self) -> None:
        await self.client.close()

    @work(exclusive=True, group="stream")
    async def follow_stream(self) -> None:
        """Load the snapshot, apply deltas; when the daemon goes away, say so and keep trying."""
        while True:
            try:
                async for msg in self.client.watch(self.model.since):
                    if not self.model.apply(msg):
                        break  # a gap: reconnect and let the daemon replay or resend a snapshot
                    self.offline_since = None
            except TgfleetError:
                pass
            if self.offline_since is None:
                self.offline_since = time.monotonic()
            self.repaint()
            await asyncio.sleep(RECONNECT_SECONDS)

    def repaint(self) -> None:
        now = time.time()
        self._paint_header(now)
        table = self.query_one("#accounts", DataTable)
        reloaded, dirty = self.model.take_dirty()
        with self.batch_update():
            if reloaded:
                table.clear()
                for account in sorted(self.model.accounts.values(), key=lambda a: a["id"]):
                    table.add_row(*cells(account, now).values(), key=str(account["id"]))
                return
            ticking = {a["id"] for a in self.model.accounts.values() if a["state"] == "cooldown"}
            for account_id in dirty | ticking:
                account = self.model.accounts[account_id]
                for key, value in cells(account, now).items():
                    table.update_cell(str(account_id), key, value)

    def _paint_header(self, now: float) -> None:
        offline = self.query_one("#offline", Static)
        if self.offline_since is not None:
            offline.update(f"daemon offline for {countdown(time.monotonic() - self.offline_since)}"
                           f" — reconnecting to {self.client.socket_path}")
            offline.add_class("shown")
        else:
            offline.remove_class("shown")
        status = self.model.status
        if not status:
            return
        counts = self.model.counts(now)
        uptime = status["uptime_seconds"] + time.monotonic() - self.model.status_at
        header = Text.assemble(
            ("tgfleet ", "bold"),
            *[part for state, n in counts.items() for part in ((f"{state} ", STATE_STYLE[state]), f"{n}  ")],
            f"│ daemon {status['version']} up {countdown(uptime)} │ {status['gateway']}",
        )
        self.query_one("#header", Static).update(header)


def run_dashboard(socket_path: Path) -> None:
    FleetApp(socket_path).run()
