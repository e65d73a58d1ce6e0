"""The dashboard application: four live views of the fleet over the control socket.

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
from tgdaemon.errors import ApiError, TgfleetError
from tgdaemon.wire import AccountChange, QuotaChange, Retried
from tgtui.commands import Action, CommandInput, palette
from tgtui.model import Clock, FleetModel
from tgtui.screens.accounts import AccountsScreen
from tgtui.screens.base import FleetScreen
from tgtui.screens.confirm import ReasonDialog
from tgtui.screens.detail import AccountDetail, DetailScreen, QuotaDetail
from tgtui.screens.events import EventsScreen
from tgtui.screens.help import HelpScreen, Section
from tgtui.screens.nodes import NodesScreen
from tgtui.screens.proxies import ProxiesScreen
from tgtui.screens.quotas import QuotasScreen
from tgtui.widgets.header import views
from tgtui.widgets.table import LineTable

REPAINT_SECONDS = 0.25
RECONNECT_SECONDS = 1.0
STATUS_SECONDS = 5.0
NODES_SECONDS = 3.0  # a node's heartbeat comes every nodes.heartbeat_seconds (2 s by default)
PROXIES_SECONDS = 5.0  # the health checker's findings come every proxies.check_interval_seconds (minutes)
VIEWS_SECONDS = 10.0
VIEWS_POLL_SECONDS = 1.0
OFFLINE_ERRORS = (TgfleetError, aiohttp.ClientError, OSError, asyncio.TimeoutError)


class FleetApp(App[None]):
    TITLE = "tgfleet"
    MODES: ClassVar[dict[str, Any]] = {"accounts": AccountsScreen, "quotas": QuotasScreen, "events": EventsScreen,
                                       "nodes": NodesScreen, "proxies": ProxiesScreen}
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

    def on_mount(self) -> None:
        self.follow_stream()
        self.poll_status()
        self.poll_nodes()
        self.poll_proxies()
        self.poll_views()
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

    def repaint(self) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, FleetScreen) and screen.is_mounted:
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
            self.act("retry", ids)

    def action_enable(self) -> None:
        if ids := self._account_targets():
            self.act("enable", ids)

    def action_disable(self) -> None:
        ids = self._account_targets()
        if not ids:
            return
        what = f"account {ids[0]}" if len(ids) == 1 else f"{len(ids)} accounts"
        self.push_screen(ReasonDialog(f"Disable {what}? Its work stops until it is enabled again.", "Disable"),
                         callback=lambda reason: self.act("disable", ids, reason) if reason else None)

    def action_pause(self) -> None:
        ids = self.targets()
        if not isinstance(self.screen, (QuotasScreen, QuotaDetail)) or not ids or ids[0] not in self.model.quotas:
            return
        self.toggle_pause(ids[0], not self.model.quotas[ids[0]]["paused"])

    def _account_targets(self) -> list[int]:
        if not isinstance(self.screen, (AccountsScreen, AccountDetail)):
            return []
        ids = self.targets()
        if not ids:
            self.notify("no account selected", severity="warning")
        return ids

    @work(group="action", exit_on_error=False)
    async def act(self, verb: str, ids: list[int], reason: str | None = None) -> None:
        changed, unchanged, failed, tasks = 0, 0, [], 0
        for account_id in ids:
            path = f"/accounts/{account_id}/{verb}"
            try:
                if verb == "retry":
                    tasks += (await self.client.call("POST", path, Retried, body={})).tasks
                    changed += 1
                    continue
                body = {"reason": reason or ""} if verb == "disable" else {}
                answer = await self.client.call("POST", path, AccountChange, body=body)
            except ApiError as exc:
                failed.append(f"{account_id}: {exc}")
                continue
            changed, unchanged = changed + answer.changed, unchanged + (not answer.changed)
        if isinstance(self.screen, AccountsScreen):
            self.screen.table.marked.clear()
        self.notify(action_summary(verb, changed, unchanged, tasks, failed),
                    severity="error" if failed else "information")

    @work(group="action", exit_on_error=False)
    async def toggle_pause(self, quota_id: int, paused: bool) -> None:
        action, verb = ("pause", "paused") if paused else ("resume", "resumed")
        try:
            answer = await self.client.call("POST", f"/quotas/{quota_id}/{action}", QuotaChange, body={})
        except ApiError as exc:  # an expired quota: the daemon's reason, as the CLI prints it
            self.notify(str(exc), severity="error")
            return
        self.notify(f"quota {quota_id} {verb}" if answer.changed else f"quota {quota_id} was already {verb}")

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
    Action("Mark", "mark or unmark the selected account", "the accounts view", ":accounts", _in(AccountsScreen),
           lambda app, s: s.action_mark()),
    Action("Pause/resume", "pause or resume the selected quota", "the quotas view and a quota's detail", ":quotas",
           _in(QuotasScreen, QuotaDetail), lambda app, s: app.action_pause()),
]


def action_summary(verb: str, changed: int, unchanged: int, tasks: int, failed: list[str]) -> str:
    """One line: what the daemon did, and the first refusal if any."""
    past = {"retry": "retried", "disable": "disabled", "enable": "enabled"}[verb]
    parts = [f"{past} {changed} account{'s' if changed != 1 else ''}"]
    if verb == "retry":
        parts[0] += f", {tasks} task{'s' if tasks != 1 else ''} due now"
    if unchanged:
        parts.append(f"{unchanged} already {past}")
    if failed:
        parts.append(f"{len(failed)} refused ({failed[0]})")
    return "; ".join(parts)


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
        ("Disable dialog", ReasonDialog.BINDINGS),
    ]


def run_dashboard(socket_path: Path) -> None:
    FleetApp(socket_path).run()
