"""The dashboard application: live views of the fleet over the control socket.

The stream worker feeds the model; a timer repaints the visible view a few
times a second, so the cost of drawing does not grow with the delta rate.
Every action goes through the control API and reports its answer; the rows
change only when the daemon's delta comes back, so the screen never shows a
state the daemon does not have.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from tgdaemon.control.client import ControlClient
from tgdaemon.display import bulk_summary, plural
from tgdaemon.errors import ApiError, TgfleetError
from tgdaemon.wire import BulkResult
from tgtui.commands import Action, CommandInput, palette
from tgtui.model import Clock, FleetModel
from tgtui.progress import Running
from tgtui.screens.accounts import AccountsScreen
from tgtui.screens.base import FleetScreen
from tgtui.screens.confirm import ConfirmDialog, ReasonDialog
from tgtui.screens.detail import AccountDetail, DetailScreen, QuotaDetail
from tgtui.screens.events import EventsScreen
from tgtui.screens.help import HelpScreen, Section
from tgtui.screens.nodes import NodesScreen
from tgtui.screens.proxies import ProxiesScreen
from tgtui.screens.pulse import PulseScreen
from tgtui.screens.quotas import QuotasScreen
from tgtui.screens.tasks import TaskDetailScreen, TasksScreen
from tgtui.widgets.header import views
from tgtui.widgets.table import LineTable

REPAINT_SECONDS = 0.25
RECONNECT_SECONDS = 1.0
STATUS_SECONDS = 5.0
NODES_SECONDS = 3.0  # a node's heartbeat comes every nodes.heartbeat_seconds (2 s by default)
PROXIES_SECONDS = 5.0  # the health checker's findings come every proxies.check_interval_seconds (minutes)
VIEWS_SECONDS = 10.0
VIEWS_POLL_SECONDS = 1.0
BULK_TIMEOUT_SECONDS = 600.0  # a bulk action on 50,000 rows: the daemon writes them a few hundred at a time
PULSE_SECONDS = 10.0  # the pulse counts per minute: every ten seconds is plenty, and only while it is shown
PULSE_MINUTES = 60
OFFLINE_ERRORS = (TgfleetError, aiohttp.ClientError, OSError, asyncio.TimeoutError)


class FleetApp(App[None]):
    TITLE = "tgfleet"
    MODES: ClassVar[dict[str, Any]] = {"accounts": AccountsScreen, "quotas": QuotasScreen, "events": EventsScreen,
                                       "nodes": NodesScreen, "proxies": ProxiesScreen, "tasks": TasksScreen,
                                       "pulse": PulseScreen}
    DEFAULT_MODE = "accounts"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", show=False),
        Binding("question_mark", "help", "Help"),
    ]

    def __init__(self, socket_path: Path, *, clock: Clock = time.time, client: ControlClient | None = None) -> None:
        super().__init__()
        self.client = client or ControlClient(socket_path)
        self.clock = clock
        self.model = FleetModel(clock)
        self.offline_since: float | None = None
        self.running: Running | None = None  # the bulk action under way

    def on_mount(self) -> None:
        self.follow_stream()
        self.poll_status()
        self.poll_nodes()
        self.poll_proxies()
        self.poll_views()
        self.poll_pulse()
        self.set_interval(REPAINT_SECONDS, self.repaint)

    async def on_unmount(self) -> None:
        await self.client.close()

    def offline_for(self) -> float | None:
        return None if self.offline_since is None else time.monotonic() - self.offline_since

    @work(group="stream", exclusive=True, exit_on_error=False)
    async def follow_stream(self) -> None:
        """Load the snapshot (its rows show frame by frame), apply deltas; after a gap resync; when the daemon goes
        away, say so and keep trying."""
        while True:
            try:
                async for msg in self.client.watch(self.model.since, parts=True):
                    self.offline_since = None
                    if not self.model.apply(msg):
                        break  # a gap: reconnect and let the daemon replay or resend a snapshot
            except OFFLINE_ERRORS:
                pass
            if self.offline_since is None:
                self.offline_since = time.monotonic()
            self.repaint()
            await asyncio.sleep(RECONNECT_SECONDS)

    @work(group="status", exclusive=True, exit_on_error=False)
    async def poll_status(self) -> None:
        """Tasks per minute and uptime are not deltas: ask for them now and then."""
        while True:
            await asyncio.sleep(STATUS_SECONDS)
            if self.offline_since is None:
                try:
                    self.model.set_status(await self.client.status())
                except OFFLINE_ERRORS:
                    pass

    @work(group="nodes", exclusive=True, exit_on_error=False)
    async def poll_nodes(self) -> None:
        """Nodes are not in the stream (their heartbeats would flood it): list them every few seconds."""
        while True:
            if self.offline_since is None:
                try:
                    self.model.set_nodes(await self.client.nodes())
                except OFFLINE_ERRORS:
                    pass
            await asyncio.sleep(NODES_SECONDS)

    @work(group="proxies", exclusive=True, exit_on_error=False)
    async def poll_proxies(self) -> None:
        """Proxies are not in the stream either: their states change when the health checker runs."""
        while True:
            if self.offline_since is None:
                try:
                    self.model.set_proxies(await self.client.proxies())
                except OFFLINE_ERRORS:
                    pass
            await asyncio.sleep(PROXIES_SECONDS)

    @work(group="views", exclusive=True, exit_on_error=False)
    async def poll_views(self) -> None:
        """Fetch the measurements of post quotas whose count moved (each at most every VIEWS_SECONDS)."""
        fetched: dict[int, tuple[int, float]] = {}  # quota id -> (measurement count, when)
        while True:
            for quota in list(self.model.quotas.values()):
                count, at = fetched.get(quota["id"], (-1, -VIEWS_SECONDS))
                if (quota["action"] != "post_stats" or count == quota["measurements"]
                        or time.monotonic() - at < VIEWS_SECONDS):
                    continue
                try:
                    self.model.set_views(quota["id"], await self.client.measurements(quota["id"]))
                except OFFLINE_ERRORS:
                    break
                fetched[quota["id"]] = (quota["measurements"], time.monotonic())
            await asyncio.sleep(VIEWS_POLL_SECONDS)

    @work(group="pulse", exclusive=True, exit_on_error=False)
    async def poll_pulse(self) -> None:
        """Tasks per minute and queue for the pulse view: at once when it is shown, then every PULSE_SECONDS."""
        fetched = -PULSE_SECONDS
        while True:
            if self.current_mode != "pulse":
                fetched = -PULSE_SECONDS
            elif self.offline_since is None and time.monotonic() - fetched >= PULSE_SECONDS:
                fetched = time.monotonic()
                try:
                    self.model.set_pulse(await self.client.pulse(PULSE_MINUTES))
                except ApiError as exc:  # a daemon without the route, or one that refuses the question
                    self.model.set_pulse(None, "this daemon has no pulse (GET /v1/pulse: HTTP 404); is it older"
                                         " than this dashboard?" if exc.status == 404 else str(exc))
                except (KeyError, TypeError, ValueError) as exc:  # an answer of another shape
                    self.model.set_pulse(None, f"an answer this dashboard cannot read ({exc})")
                except OFFLINE_ERRORS:
                    pass
                self.repaint()
            await asyncio.sleep(VIEWS_POLL_SECONDS)

    def repaint(self) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, (FleetScreen, PulseScreen)) and screen.is_mounted:
                screen.repaint()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place a failed worker is shown: one line, never a traceback."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            text = str(error).splitlines()[0] if str(error) else type(error).__name__
            self.notify(text, title=f"{event.worker.group} failed", severity="error")

    # views and screens

    def action_next_view(self) -> None:
        cycle = views(self.model, self.current_mode)
        self.switch_mode(cycle[(cycle.index(self.current_mode) + 1) % len(cycle)])

    def action_previous_view(self) -> None:
        cycle = views(self.model, self.current_mode)
        self.switch_mode(cycle[(cycle.index(self.current_mode) - 1) % len(cycle)])

    def action_proxies(self) -> None:
        self.switch_mode("proxies")

    def action_tasks(self) -> None:
        self.switch_mode("tasks")

    def action_pulse(self) -> None:
        self.switch_mode("pulse")

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(key_map()))

    def open_account(self, account_id: int) -> None:
        self.push_screen(AccountDetail(account_id))

    def open_quota(self, quota_id: int) -> None:
        self.push_screen(QuotaDetail(quota_id))

    # actions: through the control API; the rows change when the delta arrives

    def targets(self) -> list[int]:
        screen = self.screen
        if isinstance(screen, DetailScreen):
            return screen.targets()
        if isinstance(screen, FleetScreen):
            return screen.table.targets()
        return []

    def action_retry(self) -> None:
        if ids := self._account_targets():
            self.confirm_then_act("retry", ids, f"Retry the setup of {plural(len(ids), 'account')}? Their failed"
                                  " and waiting setup tasks are due now.")

    def action_enable(self) -> None:
        if ids := self._account_targets():
            self.confirm_then_act("enable", ids, f"Enable {plural(len(ids), 'account')}?")

    def action_disable(self) -> None:
        ids = self._account_targets()
        if not ids:
            return
        what = f"account {ids[0]}" if len(ids) == 1 else plural(len(ids), "account")
        its = "Its" if len(ids) == 1 else "Their"

        def disable(reason: str | None) -> None:
            if reason:
                self.act("disable", ids, reason)

        self.push_screen(ReasonDialog(f"Disable {what}? {its} work stops until enabled again.", "Disable"),
                         callback=disable)

    def action_pause(self) -> None:
        """Pause the selected or marked quotas; resume them when every one of them is paused already."""
        ids = self._quota_targets()
        if ids:
            paused = all(self.model.quotas[i]["paused"] for i in ids if i in self.model.quotas)
            self.quota_action("resume" if paused else "pause", ids)

    def action_pause_quotas(self) -> None:
        if ids := self._quota_targets():
            self.quota_action("pause", ids)

    def action_resume_quotas(self) -> None:
        if ids := self._quota_targets():
            self.quota_action("resume", ids)

    def quota_action(self, verb: str, ids: list[int]) -> None:
        self.confirm_then_act(verb, ids, f"{verb.title()} {plural(len(ids), 'quota')}?")

    def confirm_then_act(self, verb: str, ids: list[int], question: str) -> None:
        """One row goes at once, as it always did; several marked rows are confirmed first, with their count."""
        if len(ids) == 1:
            self.act(verb, ids)
            return

        def confirmed(go: bool | None) -> None:
            if go:
                self.act(verb, ids)

        self.push_screen(ConfirmDialog(question, verb.title()), callback=confirmed)

    def _account_targets(self) -> list[int]:
        if not isinstance(self.screen, (AccountsScreen, AccountDetail)):
            return []
        ids = self.targets()
        if not ids:
            self.notify("no account selected", severity="warning")
        return ids

    def _quota_targets(self) -> list[int]:
        if not isinstance(self.screen, (QuotasScreen, QuotaDetail)):
            return []
        return self.targets()

    def progress_line(self) -> str | None:
        """What the mark line says of the bulk action under way (tgtui/progress.py), if one is."""
        return self.running.line(self.model) if self.running is not None else None

    @work(group="action", exit_on_error=False)
    async def act(self, verb: str, ids: list[int], reason: str | None = None) -> None:
        """One request to the batch route however many rows are marked; the rows change as its deltas come
        in, and the mark line counts them meanwhile. The marks the action took are cleared once it answers."""
        kind = "quota" if verb in ("pause", "resume") else "account"
        origin = self.screen
        body: dict[str, Any] = {"action": verb, "ids": ids}
        if reason is not None:
            body["reason"] = reason
        self.running = Running(verb, kind, ids)
        try:
            answer = await self.client.call("POST", f"/{kind}s/batch", BulkResult, body=body,
                                            timeout=BULK_TIMEOUT_SECONDS)
        except ApiError as exc:
            self.notify(str(exc), severity="error")
            return
        finally:
            self.running = None
        if isinstance(origin, FleetScreen):
            origin.action_clear_marks()
        self.notify(bulk_summary(answer, kind), severity="error" if answer.refused else "information")

    # the command palette offers every action in every view (tgtui/commands.py: where one does not apply, it
    # says where it does)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for view in self.MODES:
            yield SystemCommand(f"View: {view}", f"switch to the {view} view (:{view})",
                                lambda v=view: self.switch_mode(v))
        yield SystemCommand("Help", "every key and command of the dashboard (:help)", self.action_help)
        yield from palette(self, screen, PALETTE)


def _in(*kinds: type[Screen[Any]]) -> Callable[[Screen[Any]], bool]:
    return lambda screen: isinstance(screen, kinds)


LIST = "a list view"
ACCOUNTS = "the accounts view and an account's detail"
MARKING = "the accounts, quotas and tasks views"
QUOTAS = "the quotas view and a quota's detail"


def _markable(screen: Screen[Any]) -> bool:
    return isinstance(screen, FleetScreen) and screen.MARKABLE
PALETTE = [
    Action("Command", "a command line: a view, filter TEXT, sort COLUMN[!], help, quit (:)", LIST, ":accounts",
           _in(FleetScreen), lambda app, s: s.action_command()),
    Action("Filter", "filter the rows (words, or column:value)", LIST, ":accounts", _in(FleetScreen),
           lambda app, s: s.action_filter()),
    Action("Clear filter", "show every row again", LIST, ":accounts", _in(FleetScreen),
           lambda app, s: s.action_clear_filter()),
    Action("Sort", "sort by the next column", LIST, ":accounts", _in(FleetScreen), lambda app, s: s.action_sort()),
    Action("Reverse sort", "flip the sort order", LIST, ":accounts", _in(FleetScreen),
           lambda app, s: s.action_reverse()),
    Action("Retry", "retry the setup tasks of the marked or selected accounts", ACCOUNTS, ":accounts",
           _in(AccountsScreen, AccountDetail), lambda app, s: app.action_retry()),
    Action("Disable", "disable the marked or selected accounts (asks for a reason)", ACCOUNTS, ":accounts",
           _in(AccountsScreen, AccountDetail), lambda app, s: app.action_disable()),
    Action("Enable", "enable the marked or selected accounts", ACCOUNTS, ":accounts",
           _in(AccountsScreen, AccountDetail), lambda app, s: app.action_enable()),
    Action("Mark", "mark or unmark the selected row", MARKING, ":accounts", _markable,
           lambda app, s: s.action_mark()),
    Action("Mark all", "mark every row shown (all the filter matches)", MARKING, ":accounts", _markable,
           lambda app, s: s.action_mark_all()),
    Action("Invert marks", "mark the rows shown that are not, unmark those that are", MARKING, ":accounts",
           _markable, lambda app, s: s.action_invert_marks()),
    Action("Clear marks", "unmark every row", MARKING, ":accounts", _markable, lambda app, s: s.action_clear_marks()),
    Action("Pause/resume", "pause the marked or selected quotas, or resume them if all are paused", QUOTAS,
           ":quotas", _in(QuotasScreen, QuotaDetail), lambda app, s: app.action_pause()),
    Action("Pause", "pause the marked or selected quotas", QUOTAS, ":quotas", _in(QuotasScreen, QuotaDetail),
           lambda app, s: app.action_pause_quotas()),
    Action("Resume", "resume the marked or selected quotas", QUOTAS, ":quotas", _in(QuotasScreen, QuotaDetail),
           lambda app, s: app.action_resume_quotas()),
    Action("Retry tasks", "retry the marked or selected tasks", "the tasks view and a task's detail", ":tasks",
           _in(TasksScreen, TaskDetailScreen), lambda app, s: s.action_retry()),
    Action("Retry all matching", "retry every task the filter matches (asks first, with the count)",
           "the tasks view", ":tasks", _in(TasksScreen), lambda app, s: s.action_retry_all()),
]



def key_map() -> list[Section]:
    """Every key, by where it works; the help screen and docs/dashboard.md show this."""
    return [
        ("Everywhere", [*FleetApp.BINDINGS, Binding("ctrl+p", "command_palette", "Command palette"),
                        *FleetScreen.BINDINGS]),
        ("In a table", LineTable.BINDINGS),
        ("Command prompt (:)", CommandInput.BINDINGS),
        ("Accounts view", AccountsScreen.BINDINGS),
        ("Quotas view", QuotasScreen.BINDINGS),
        ("Account detail", [*AccountDetail.BINDINGS, *DetailScreen.BINDINGS]),
        ("Quota detail", QuotaDetail.BINDINGS),
        ("Tasks view", TasksScreen.BINDINGS),
        ("Task detail", TaskDetailScreen.BINDINGS),
        ("Disable dialog", ReasonDialog.BINDINGS),
        ("Confirm dialog", ConfirmDialog.BINDINGS),
    ]


def run_dashboard(socket_path: Path) -> None:
    FleetApp(socket_path).run()
