"""Detail screens for one account (setup tasks, recent events) and one quota (measurements).

The summary is drawn from the model, so it follows the stream; the lists are
asked of the control API when the screen opens and again whenever the
object's delta arrives, so they are never older than what the summary shows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, cast

import msgspec
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Label, Static

from tgdaemon.display import HEALTH_STYLE, STATE_STYLE, absolute, duration, times_in
from tgdaemon.wire import AccountDevice, EventList, TaskList
from tgtui.fmt import ago, bar, percent, when
from tgtui.model import effective_state, parse_time
from tgtui.screens import measured
from tgtui.screens.quotas import (
    done_total,
    inspection,
    last_error,
    left,
    state,
    state_text,
)
from tgtui.widgets.chart import ChartView

if TYPE_CHECKING:
    from tgtui.app import FleetApp

RECENT_EVENTS = 50
RECENT_MEASUREMENTS = 50
FOLLOW_SECONDS = 1.0
NAME_WIDTH = 13  # a summary line's name, padded: the values line up in a column a person can scan
PROGRESS_WIDTH = 30
STATUS_ORDER = {status: n for n, status in enumerate(("failed", "retry", "running", "pending", "done"))}  # news first
TALL = 34  # a terminal at least this high gets the taller chart


class DetailScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    DetailScreen { align: center middle; }
    DetailScreen > Vertical { width: 100%; max-width: 140; height: 100%; border: thick $primary;
                              background: $surface; padding: 0 1; }
    DetailScreen #summary { height: auto; }
    DetailScreen.roomy #summary { margin-bottom: 1; }
    DetailScreen Label { text-style: bold; }
    DetailScreen DataTable { height: 1fr; min-height: 3; overflow-x: hidden; }
    DetailScreen ChartView { height: 7; }
    DetailScreen.roomy ChartView { height: 11; margin-bottom: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "app.pop_screen", "Close")]

    def __init__(self, key: int) -> None:
        super().__init__()
        self.key = key
        self._drawn: Any = None
        self._timed: dict[str, list[Timed]] = {}  # table id -> its columns drawn against the clock

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

    def on_resize(self) -> None:
        """A tall terminal gets air between the parts and a taller chart; 24 rows need every line."""
        self.set_class(self.size.height >= TALL, "roomy")

    def on_mount(self) -> None:
        self.follow()
        self.set_interval(FOLLOW_SECONDS, self.follow)

    def follow(self) -> None:
        """Redraw the summary from the model; reload the lists when a delta replaced the object."""
        obj = self.current()
        if obj is None:
            self.query_one("#summary", Static).update(Text("not in the fleet (or not yet loaded)", "dim"))
            return
        now = self.fleet.clock()
        self.query_one("#summary", Static).update(self.summary(obj, now))
        self.retime(now)
        if obj is not self._drawn:
            self._drawn = obj
            self.reload()

    @work(group="detail", exclusive=True, exit_on_error=False)
    async def reload(self) -> None:
        await self.load()

    def fill(self, table_id: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]], *timed: Timed) -> None:
        """A list of the detail; ``timed``: its columns whose text says a time against now (redrawn each second,
        so "just now" does not stay just now)."""
        table = self.query_one(table_id, DataTable)
        table.clear(columns=True)
        table.add_columns(*columns)
        table.add_rows([tuple("" if v is None else v for v in row) for row in rows])
        self._timed[table_id] = list(timed)
        self.retime(self.fleet.clock())

    def retime(self, now: float) -> None:
        for table_id, columns in self._timed.items():
            table = self.query_one(table_id, DataTable)
            for column, values, show in columns:
                for row, value in enumerate(values[:table.row_count]):
                    table.update_cell_at(Coordinate(row, column), show(value, now), update_width=True)


Timed = tuple[int, list[str | None], Callable[[str | None, float], str]]  # column, each row's value, how shown


def error_of(code: str | None, message: str | None) -> str:
    """``CODE: message``, the code once: a message that begins with it (``FLOOD_WAIT (wait, 12s): ...``) is
    shown as it is."""
    if not message:
        return code or ""
    if not code or message.startswith(code):
        return message
    return f"{code}: {message}"


def line(name: str, *values: str | Text | tuple[str, str]) -> Text:
    """A summary line: its name in a column of its own, then the values."""
    return Text.assemble((f"{name:<{NAME_WIDTH - 1}} ", "dim"), *values, "\n")


def field(name: str, value: str | Text) -> Text:
    """A second name and value on a line."""
    return Text.assemble(("   " + name + " ", "dim"), value)


def health_lines(a: dict[str, Any], now: float) -> Text:
    """The last health check: its finding and when; what it rests on, each on a line of its own."""
    if not a.get("health_checked_at"):
        return line("health", ("never checked", "dim"))
    health = a.get("health") or "unknown"
    detail = a.get("health_detail") or {}
    out = line("health", (health, HEALTH_STYLE.get(health, "")), f", checked {when(a['health_checked_at'], now)}",
               field("sessions", str(detail["sessions"])) if "sessions" in detail else "")
    if detail.get("frozen_since"):
        out.append_text(line("frozen", f"since {_full(detail['frozen_since'])}"
                             + (f", until {_full(detail['frozen_until'])}" if detail.get("frozen_until") else "")))
    if "spambot" in detail:
        until_text = f", until {_full(detail['limited_until'])}" if detail.get("limited_until") else ""
        out.append_text(line("@SpamBot", detail["spambot"] + until_text))
    if detail.get("error"):
        out.append_text(line("check failed", detail["error"]))
    return out


def _full(value: str) -> str:
    at = parse_time(value)
    return absolute(at) if at is not None else value


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
        """What matters first: who, in what state and why (cooldown, disabled, last error), when it last
        worked; then where it runs, its health and its own device. One fact per line, so 80 columns cut
        nothing."""
        current = effective_state(a, now)
        out = Text.assemble((f"{a['label']}", "bold"), f"  #{a['id']}  {a['phone_masked'] or ''}  ",
                            (current, f"bold {STATE_STYLE.get(current, '')}"), f"  {a['name']}\n")
        if current == "cooldown":
            out.append_text(line("cooldown", (ago(a["cooldown_until"], now), "yellow"),
                                 f" ({a['cooldown_reason'] or '?'}), until {_full(a['cooldown_until'])}"))
        if a["disabled_at"]:
            out.append_text(line("disabled", (a["disabled_reason"] or "", "red"), f", {when(a['disabled_at'], now)}"))
        out.append_text(line("last error", *self.error_text(a, now)))
        out.append_text(line("last ok", when(a["last_ok_at"], now)))
        setup = "probe account" if a["is_probe"] else f"{a['setup']['done']}/{a['setup']['total']} tasks done"
        out.append_text(line("setup", setup, field("executor", a["executor"] or "")))
        owner = a.get("owner") or "no node"
        if a.get("pinned_node"):
            owner += " (pinned)" if a["pinned_node"] == owner else f" (pinned to {a['pinned_node']})"
        out.append_text(line("node", owner, field("proxy", a.get("proxy") or "none of its own")))
        out.append_text(health_lines(a, now))
        if self.device:  # only an account with its own: the rest present [telegram]'s
            out.append_text(line("own device", self.device))
        out.rstrip()
        return out

    def error_text(self, a: dict[str, Any], now: float) -> tuple[str | tuple[str, str], ...]:
        """The account keeps only its last error's code; its message and time are those of the newest task
        that failed with it, as last loaded."""
        code = a["last_error_code"]
        if not code:
            return (("none", "dim"),)
        task = self.failed_task if self.failed_task and self.failed_task.last_error_code == code else None
        if task is None:
            return ((code, "red"),)
        message = error_of(code, task.last_error)[len(code):]
        return ((code, "red"), message, f" ({task.task_type}, {ago(task.updated_at, now)})")

    failed_task: Any = None  # the newest task with an error, as last loaded: the account's last error's message

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
        failed = [t for t in tasks if t.last_error_code]
        newest = max(failed, key=lambda t: t.updated_at or "", default=None)
        if newest is not self.failed_task:
            self.failed_task = newest
            self.follow()
        tasks = sorted(tasks, key=lambda t: STATUS_ORDER.get(t.status, len(STATUS_ORDER)))  # stable: by id within
        self.fill("#tasks", ("Task", "Status", "Updated", "Tries", "Blocked by", "Last error"), [
            (t.task_type, t.status, "", t.attempts, "", error_of(t.last_error_code, t.last_error)) for t in tasks],
                  (2, [t.updated_at for t in tasks], ago), (4, [t.blocked_by for t in tasks], times_in))
        self.fill("#events", ("When", "Kind", "Message"), [("", e.kind, e.message) for e in events],
                  (0, [e.at for e in events], ago))


class QuotaDetail(DetailScreen):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("p", "app.pause", "Pause/resume")]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(id="summary")
            yield Label("Views gained between measurements", id="series")
            yield ChartView(self.chart, id="views")
            yield Label("Latest measurements")
            yield DataTable(id="measurements", cursor_type="row")
        yield Footer(compact=True)

    measured: list[dict[str, Any]] = []  # the measurements as last loaded, oldest first

    def chart(self, width: int, height: int) -> list[Text]:
        quota = self.current()
        if quota is None:
            return []
        return measured.draw(quota, self.measured, self.fleet.clock(), width, height)

    def targets(self) -> list[int]:
        return [self.key]

    def retime(self, now: float) -> None:
        super().retime(now)
        self.query_one("#views", ChartView).refresh()  # its time axis and words say times against now

    def current(self) -> dict[str, Any] | None:
        return self.fleet.model.quotas.get(self.key)

    def summary(self, q: dict[str, Any], now: float) -> Text:
        done, total = done_total(q)
        out = Text.assemble((q["name"], "bold"), f"  #{q['id']}  {q['action']} on {q['target']}",
                            f"  {q['title'] or ''}\n")
        out.append_text(Text.assemble(bar(done, total, PROGRESS_WIDTH),
                                      f"  {left(q) or 0}/{total} left ({percent(done, total)} done)\n"))
        out.append_text(line("state", state_text(q, now), field("every", duration(q["interval_seconds"])),
                             field("inspection", inspection(q))))
        running = state(q, now) == "active"
        out.append_text(line("next run", when(q["next_run_at"], now, "-") if running else ("-", "dim")))
        out.append_text(line("expires", when(q["expires_at"], now)))
        out.append_text(line("last error", last_error(q) or ("none", "dim"),
                             field("measurements", f"{q['measurements']:,}")))
        out.rstrip()
        return out

    async def load(self) -> None:
        rows = await self.fleet.client.measurements(self.key)
        self.fleet.model.set_views(self.key, rows)
        self.measured = rows
        quota = self.current()
        chart = self.query_one("#views", ChartView)
        if quota is not None:
            width, height = chart.content_size
            self.query_one("#series", Label).update(measured.title(quota, rows, width or self.size.width - 4,
                                                                   height or 7))
        chart.refresh()
        latest = list(reversed(rows[-RECENT_MEASUREMENTS:]))
        self.fill("#measurements", ("Observed", "Post", "Views", "Forwards", "Replies", "Reactions", "Subscribers"), [
            ("", m["post_id"] or "", m["views"], m["forwards"], m["replies"], m["reactions"], m["subscribers"])
            for m in latest], (0, [m["observed_at"] for m in latest], ago))
