"""Detail screens for one account (setup tasks, recent events) and one quota (measurements).

The summary is drawn from the model, so it follows the stream; the lists are
asked of the control API when the screen opens and again whenever the
object's delta arrives, so they are never older than what the summary shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

import msgspec
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Label, Sparkline, Static

from tgdaemon.display import HEALTH_STYLE, STATE_STYLE, duration
from tgdaemon.wire import AccountDevice, EventList, TaskList
from tgtui.fmt import bar, clock_time, until
from tgtui.model import effective_state
from tgtui.screens.quotas import (
    done_total,
    inspection,
    last_error,
    left,
    next_run,
    state_text,
)

if TYPE_CHECKING:
    from tgtui.app import FleetApp

RECENT_EVENTS = 50
RECENT_MEASUREMENTS = 50
FOLLOW_SECONDS = 1.0


class DetailScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    DetailScreen { align: center middle; }
    DetailScreen > Vertical { width: 100%; max-width: 140; height: 100%; border: thick $primary;
                              background: $surface; padding: 0 1; }
    DetailScreen #summary { height: auto; margin-bottom: 1; }
    DetailScreen Label { text-style: bold; }
    DetailScreen DataTable { height: 1fr; min-height: 3; }
    DetailScreen Sparkline { height: 3; margin-bottom: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "app.pop_screen", "Close")]

    def __init__(self, key: int) -> None:
        super().__init__()
        self.key = key
        self._drawn: Any = None

    @property
    def fleet(self) -> FleetApp:
        return cast("FleetApp", self.app)

    def current(self) -> dict[str, Any] | None:
        raise NotImplementedError

    def targets(self) -> list[int]:
        """What an action from this detail acts on: each kind of detail names its own."""
        raise NotImplementedError

    def summary(self, obj: dict[str, Any], now: float) -> Text:
        raise NotImplementedError

    async def load(self) -> None:
        raise NotImplementedError

    def on_mount(self) -> None:
        self.follow()
        self.set_interval(FOLLOW_SECONDS, self.follow)

    def follow(self) -> None:
        """Redraw the summary from the model; reload the lists when a delta replaced the object."""
        obj = self.current()
        if obj is None:
            self.query_one("#summary", Static).update(Text("not in the fleet (or not yet loaded)", "dim"))
            return
        self.query_one("#summary", Static).update(self.summary(obj, self.fleet.clock()))
        if obj is not self._drawn:
            self._drawn = obj
            self.reload()

    @work(group="detail", exclusive=True, exit_on_error=False)
    async def reload(self) -> None:
        await self.load()

    def fill(self, table_id: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        table = self.query_one(table_id, DataTable)
        table.clear(columns=True)
        table.add_columns(*columns)
        table.add_rows([tuple("" if v is None else v for v in row) for row in rows])


def field(name: str, value: str | Text) -> Text:
    return Text.assemble((f"{name} ", "dim"), value, "   ")


def _day(value: str) -> str:
    """A date days away, as UTC minutes (a clock time would not say which day)."""
    return value[:16].replace("T", " ") + " UTC"


def health_line(a: dict[str, Any]) -> Text:
    """The last health check, on a line of its own: its finding, when, and what it rests on."""
    if not a.get("health_checked_at"):
        return Text.assemble("\n", ("health ", "dim"), ("never checked", "dim"))
    health = a.get("health") or "unknown"
    detail = a.get("health_detail") or {}
    out = Text.assemble("\n", ("health ", "dim"), (health, HEALTH_STYLE.get(health, "")),
                        f" (checked {clock_time(a['health_checked_at'])})   ")
    if "sessions" in detail:
        out.append_text(field("sessions", str(detail["sessions"])))
    if detail.get("frozen_since"):
        out.append_text(field("frozen", f"since {_day(detail['frozen_since'])}"
                              + (f", until {_day(detail['frozen_until'])}" if detail.get("frozen_until") else "")))
    if "spambot" in detail:
        until_text = f" until {_day(detail['limited_until'])}" if detail.get("limited_until") else ""
        out.append_text(field("@SpamBot", detail["spambot"] + until_text))
    if detail.get("error"):
        out.append_text(field("check failed", detail["error"]))
    return out


class AccountDetail(DetailScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "app.retry", "Retry"),
        Binding("d", "app.disable", "Disable"),
        Binding("e", "app.enable", "Enable"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(id="summary")
            yield Label("Setup tasks")
            yield DataTable(id="tasks", cursor_type="row")
            yield Label("Recent events")
            yield DataTable(id="events", cursor_type="row")
        yield Footer(compact=True)

    def targets(self) -> list[int]:
        return [self.key]

    def current(self) -> dict[str, Any] | None:
        return self.fleet.model.accounts.get(self.key)

    def summary(self, a: dict[str, Any], now: float) -> Text:
        state = effective_state(a, now)
        out = Text.assemble((f"{a['label']}", "bold"), f"  #{a['id']}  {a['phone_masked'] or ''}  ",
                            (state, STATE_STYLE.get(state, "")), f"  {a['name']}\n")
        setup = "probe account" if a["is_probe"] else f"{a['setup']['done']}/{a['setup']['total']}"
        out.append_text(field("setup", setup))
        out.append_text(field("executor", a["executor"] or ""))
        out.append_text(field("owner", a.get("owner") or "no node"))
        if a.get("pinned_node"):
            out.append_text(field("pinned to", a["pinned_node"]))
        out.append_text(field("proxy", a.get("proxy") or "none of its own"))
        if state == "cooldown":
            out.append_text(field("cooldown", f"{until(a['cooldown_until'], now)} ({a['cooldown_reason'] or '?'})"))
        if a["disabled_at"]:
            out.append_text(field("disabled", f"{a['disabled_reason']} (at {clock_time(a['disabled_at'])})"))
        out.append_text(field("last error", a["last_error_code"] or "none"))
        out.append_text(field("last ok", clock_time(a["last_ok_at"]) or "never"))
        out.append_text(health_line(a))
        if self.device:  # only an account with its own: the rest present [telegram]'s
            out.append("\n")
            out.append_text(field("own device", self.device))
        return out

    device = ""  # the account's own app and device (api_hash masked), as last loaded; "" when it has none

    async def load(self) -> None:
        client = self.fleet.client
        own = (await client.call("GET", f"/accounts/{self.key}/device", AccountDevice)).own
        device = "  ".join(f"{name.removesuffix('_masked')} {value}" for name, value in
                           msgspec.structs.asdict(own).items() if value is not None)
        if device != self.device:
            self.device = device
            self.follow()  # the summary shows it now, not at the next tick
        tasks = (await client.call("GET", "/tasks", TaskList, params={"account_id": self.key, "kind": "setup"})).tasks
        events = (await client.call("GET", "/events", EventList,
                                    params={"account_id": self.key, "limit": RECENT_EVENTS})).events
        self.fill("#tasks", ("Task", "Status", "Attempts", "Blocked by", "Last error", "Updated"), [
            (t.task_type, t.status, t.attempts, t.blocked_by or "",
             ": ".join(p for p in (t.last_error_code, t.last_error) if p), clock_time(t.updated_at))
            for t in tasks])
        self.fill("#events", ("Time", "Kind", "Message"), [(clock_time(e.at), e.kind, e.message) for e in events])


class QuotaDetail(DetailScreen):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("p", "app.pause", "Pause/resume")]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(id="summary")
            yield Label("Views gained between measurements, over time", id="series")
            yield Sparkline([], id="views")
            yield Label("Latest measurements")
            yield DataTable(id="measurements", cursor_type="row")
        yield Footer(compact=True)

    def targets(self) -> list[int]:
        return [self.key]

    def current(self) -> dict[str, Any] | None:
        return self.fleet.model.quotas.get(self.key)

    def summary(self, q: dict[str, Any], now: float) -> Text:
        done, total = done_total(q)
        out = Text.assemble((q["name"], "bold"), f"  #{q['id']}  {q['action']} on {q['target']}",
                            f"  {q['title'] or ''}\n")
        out.append_text(Text.assemble(bar(done, total, 20), f" {done}/{total}   "))
        out.append_text(field("left", str(left(q) or 0)))
        out.append_text(field("every", duration(q["interval_seconds"])))
        out.append_text(field("next run", next_run(q, now) or "-"))
        out.append_text(field("expires in", until(q["expires_at"], now, "expired")))
        out.append(Text("\n"))
        out.append_text(field("state", state_text(q, now)))
        out.append_text(field("inspection", inspection(q)))
        out.append_text(field("last error", last_error(q) or "none"))
        out.append_text(field("measurements", str(q["measurements"])))
        return out

    async def load(self) -> None:
        rows = await self.fleet.client.measurements(self.key)
        self.fleet.model.set_views(self.key, rows)
        quota = self.current()
        if quota is not None and quota["action"] == "channel_stats":  # no posts: the channel's size is the series
            self.query_one("#series", Label).update("Subscribers, over time")
            series = [float(m["subscribers"]) for m in rows if m["subscribers"] is not None]
        else:
            series = self.fleet.model.views.get(self.key, [])
        self.query_one("#views", Sparkline).data = series
        self.fill("#measurements", ("Observed", "Post", "Views", "Forwards", "Replies", "Reactions", "Subscribers"), [
            (clock_time(m["observed_at"]), m["post_id"] or "", m["views"], m["forwards"], m["replies"],
             m["reactions"], m["subscribers"]) for m in reversed(rows[-RECENT_MEASUREMENTS:])])
