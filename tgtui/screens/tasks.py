"""The tasks view: setup and pulled tasks together, per-queue counts, each task's attempt history, and retry.

Tasks are not in the stream (a fleet's setup makes hundreds of thousands of them): the view asks
``GET /v1/tasks`` every few seconds while it is shown, with the filter's ``status:``, ``queue:``, ``type:``,
``account:`` and ``kind:`` fields sent to the daemon when they name a value exactly; free words and partial
values filter the rows here, as in every view.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Label, Static

from tgdaemon.display import TASK_STATUS_STYLE, ago, times_in
from tgdaemon.errors import ApiError
from tgdaemon.wire import ANY_TASK_STATUSES, TaskDetail, TaskList, TasksRetried
from tgtui.model import parse_time
from tgtui.screens.base import FleetScreen
from tgtui.screens.confirm import ConfirmDialog
from tgtui.table import Column, Row, RowSet, parse_filter
from tgtui.widgets.header import OfflineBanner
from tgtui.widgets.table import MARK_BINDINGS, LineTable

if TYPE_CHECKING:
    from tgtui.app import FleetApp

POLL_SECONDS = 2.5
LIMIT = 2000  # of each kind, per poll (about 25 ms of the daemon at 400,000 setup tasks); the header counts all
DETAIL_SECONDS = 2.0
KINDS = ("setup", "pulled")
QUEUE_ORDER = ("fast", "media")


def server_filter(text: str) -> tuple[dict[str, Any], bool]:
    """The query the daemon can apply for this filter, and whether it expresses the whole filter (no free word,
    no partial value): then "retry all matching" can send it as it is instead of the listed ids."""
    words, fields = parse_filter(text)
    query: dict[str, Any] = {}
    whole = not words
    for name, value in fields.items():
        if name == "status" and value in ANY_TASK_STATUSES:
            query["status"] = value
        elif name == "kind" and value in KINDS:
            query["kind"] = value
        elif name == "queue" and (value in QUEUE_ORDER or value.startswith("pulled:") and len(value) > 7):
            query["queue"] = value
        elif name == "type" and value.replace("_", "").isalnum():
            query["type"] = value
        elif name == "account" and value.isdigit() and int(value) > 0:
            query["account_id"] = int(value)
        else:
            whole = False
    return query, whole


def _status(row: Row, now: float) -> Text:
    return Text(row["status"], style=TASK_STATUS_STYLE.get(row["status"], ""))


def _updated(row: Row, now: float) -> float:
    return parse_time(row["updated_at"]) or 0.0


def _age(row: Row, now: float) -> str:
    at = _updated(row, now)
    return ago(max(0.0, now - at)) if at else ""


TASK_COLUMNS = [
    Column("id", "Task", 12, lambda r, n: r["key"]),
    Column("kind", "Kind", 6, lambda r, n: r["kind"], drop=4),
    Column("account", "Account", 14, lambda r, n: f"{r['account_id']} {r['label']}",
           sort=lambda r, n: r["account_id"]),
    Column("type", "Type", 16, lambda r, n: r["task_type"]),
    Column("queue", "Queue", 13, lambda r, n: r["queue"] or "?", drop=3),
    Column("status", "Status", 7, _status),
    Column("attempts", "Tries", 5, lambda r, n: str(r["attempts"]), sort=lambda r, n: r["attempts"], right=True,
           drop=5),
    Column("blocked", "Blocked by", 12, lambda r, n: times_in(r["blocked_by"], n), flex=True, drop=2, timed=True),
    Column("error", "Last error", 14, lambda r, n: r["last_error_code"] or "", flex=True, drop=1),
    Column("age", "Updated", 9, _age, sort=_updated, timed=True, right=True),
]


def counts_line(counts: dict[str, dict[str, int]]) -> Text:
    """``fast 812 done 3 failed │ media …``: every queue's tasks by status, the fleet's whatever the filter."""
    out = Text()
    queues = [q for q in QUEUE_ORDER if q in counts] + sorted(q for q in counts if q not in QUEUE_ORDER)
    for n, queue in enumerate(queues):
        if n:
            out.append(" │ ", style="dim")
        out.append(queue, style="bold")
        by_status = counts[queue]
        if not by_status:
            out.append(" none", style="dim")
        for status in ANY_TASK_STATUSES:
            if by_status.get(status):
                out.append(f" {by_status[status]:,} ")
                out.append(status, style=TASK_STATUS_STYLE.get(status, ""))
    return out


class TasksScreen(FleetScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "mark", "Mark", key_display="␣"),
        *MARK_BINDINGS,
        Binding("r", "retry", "Retry"),
        Binding("R", "retry_all", "Retry all matching"),
    ]
    MARKABLE = True
    NOUN = "task"
    EMPTY = "no tasks (or none match the filter)"
    DEFAULT_CSS = "TasksScreen #counts { height: auto; padding: 0 1; }"

    def __init__(self) -> None:
        super().__init__()
        self.tasks: dict[str, Row] = {}
        self.counts: dict[str, dict[str, int]] = {}
        self.tasks_rev = 0
        self.problem: str | None = None  # the daemon refused the filter: said in place of the rows

    def compose(self) -> ComposeResult:
        for widget in super().compose():
            yield widget
            if isinstance(widget, OfflineBanner):
                yield Static(id="counts")

    def make_rowset(self) -> RowSet:
        return RowSet(TASK_COLUMNS, key="key", sort="age", desc=True)

    def rows(self) -> Iterable[Row]:
        return self.tasks.values()

    def rev(self) -> int:
        return self.tasks_rev

    def on_mount(self) -> None:
        self.poll()
        self.set_interval(POLL_SECONDS, self.poll)

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        self.poll()

    def _refilter(self, text: str) -> None:
        super()._refilter(text)
        self.poll()  # the daemon's part of the filter changed what to ask for

    def repaint(self) -> None:
        super().repaint()
        if self.problem is not None:
            self.table.empty = self.problem

    @work(group="tasks", exclusive=True, exit_on_error=False)
    async def poll(self) -> None:
        if not self.is_current or self.fleet.offline_since is not None:
            return
        query, _ = server_filter(self.rowset.filter)
        try:
            listing = await self.fleet.client.call("GET", "/tasks", TaskList, params={**query, "limit": LIMIT})
        except ApiError as exc:  # a type the daemon does not know: said, and nothing listed
            self.problem, self.tasks = str(exc), {}
        else:
            self.problem = None
            self.tasks = {t.key: _row(t) for t in listing.tasks}
            self.counts = listing.counts
        self.tasks_rev += 1
        self.query_one("#counts", Static).update(counts_line(self.counts))
        self.repaint()

    def action_retry(self) -> None:
        keys = self.table.targets()
        if not keys:
            self.notify("no task selected", severity="warning")
            return
        self.retry({"ids": keys})

    def action_retry_all(self) -> None:
        """Every task matching the filter: the daemon's count first (a dry run), then one request after the
        confirm. A filter the daemon cannot apply whole (free words) retries the rows it shows instead."""
        query, whole = server_filter(self.rowset.filter)
        if whole and not {k: v for k, v in query.items() if k != "kind"}:
            self.notify("retry all needs a filter first (/ then status:failed, queue:media, type:…, account:…)",
                        severity="warning")
            return
        body: dict[str, Any] = dict(query) if whole else {"ids": [r["key"] for r in self.rowset.rows]}
        if not whole and not body["ids"]:
            self.notify("no task matches the filter", severity="warning")
            return
        self.ask_retry_all(body)

    @work(group="retry", exclusive=True, exit_on_error=False)
    async def ask_retry_all(self, body: dict[str, Any]) -> None:
        try:
            dry = await self.fleet.client.call("POST", "/tasks/retry", TasksRetried, body={**body, "dry_run": True})
        except ApiError as exc:
            self.notify(str(exc), severity="error")
            return
        if not dry.retried:
            self.notify(f"none of the {dry.matched:,} matching tasks can be retried"
                        + (f" ({dry.refused[0].reason})" if dry.refused else ""), severity="warning")
            return
        what = self.rowset.filter.strip()
        status = body.get("status")
        noun = f"{status} task" if status else "task"
        question = f"Retry {dry.retried:,} {noun}{'s' if dry.retried != 1 else ''}? ({what})"
        if dry.refused_count:
            question += f"\n{dry.refused_count:,} of the {dry.matched:,} matching cannot be: {dry.refused[0].reason}"

        def answered(yes: bool | None) -> None:
            if yes:
                self.retry(body)

        self.app.push_screen(ConfirmDialog(question, "Retry"), callback=answered)

    @work(group="retry", exit_on_error=False)
    async def retry(self, body: dict[str, Any]) -> None:
        try:
            done = await self.fleet.client.call("POST", "/tasks/retry", TasksRetried, body=body)
        except ApiError as exc:
            self.notify(str(exc), severity="error")
            return
        self.action_clear_marks()
        line = f"retried {done.retried:,} of {done.matched:,} tasks"
        if done.refused_count:
            line += f"; {done.refused_count:,} not ({done.refused[0].task}: {done.refused[0].reason})"
        self.notify(line, severity="warning" if done.refused_count else "information")
        self.poll()

    def on_line_table_chosen(self, event: LineTable.Chosen) -> None:
        self.app.push_screen(TaskDetailScreen(event.key))


def _row(t: Any) -> Row:
    return {"key": t.key, "kind": t.kind, "id": t.id, "account_id": t.account_id, "label": t.label,
            "task_type": t.task_type, "queue": t.queue, "status": t.status, "attempts": t.attempts,
            "blocked_by": t.blocked_by, "last_error_code": t.last_error_code, "last_error": t.last_error,
            "updated_at": t.updated_at, "created_at": t.created_at, "retry_at": t.retry_at}


class TaskDetailScreen(ModalScreen[None]):
    """One task: what it is and why it waits, then its attempts (started, ended, how long, node, outcome,
    error), newest first; asked again every few seconds while open."""

    DEFAULT_CSS = """
    TaskDetailScreen { align: center middle; }
    TaskDetailScreen > Vertical { width: 100%; max-width: 140; height: 100%; border: thick $primary;
                                  background: $surface; padding: 0 1; }
    TaskDetailScreen #summary { height: auto; margin-bottom: 1; }
    TaskDetailScreen Label { text-style: bold; }
    TaskDetailScreen DataTable { height: 1fr; min-height: 3; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "app.pop_screen", "Close"),
        Binding("r", "retry", "Retry"),
    ]

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self.detail: TaskDetail | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text("loading…", "dim"), id="summary")
            yield Label("Attempts", id="attempts-label")
            yield DataTable(id="attempts", cursor_type="row")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.load()
        self.set_interval(DETAIL_SECONDS, self.load)

    @work(group="task-detail", exclusive=True, exit_on_error=False)
    async def load(self) -> None:
        kind, _, number = self.key.partition(":")
        try:
            detail = await cast("FleetApp", self.app).client.call("GET", f"/tasks/{kind}/{number}", TaskDetail)
        except ApiError as exc:
            self.query_one("#summary", Static).update(Text(str(exc), "bold red"))
            return
        if detail == self.detail:
            return
        self.detail = detail
        self.query_one("#summary", Static).update(summary(detail, cast("FleetApp", self.app).clock()))
        kept = f" (the last {detail.attempts_kept} kept)" if detail.attempts_kept else ""
        self.query_one("#attempts-label", Label).update(f"Attempts, newest first{kept}")
        table = self.query_one("#attempts", DataTable)
        table.clear(columns=True)
        table.add_columns("#", "Started", "Ended", "Took", "Node", "Outcome", "Error")
        for a in reversed(detail.attempts):
            took = "" if a.seconds is None else f"{a.seconds:.1f}s"
            outcome = Text(a.outcome, style=TASK_STATUS_STYLE["done" if a.outcome == "done" else "failed"])
            table.add_row(str(a.attempt), _when(a.started_at), _when(a.ended_at), took, a.node or a.executor or "",
                          outcome, ": ".join(p for p in (a.error_code, a.error) if p))
        if not detail.attempts:
            table.add_row("", "no finished attempt yet", "", "", "", "", "")

    def action_retry(self) -> None:
        screen = next((s for s in self.app.screen_stack if isinstance(s, TasksScreen)), None)
        if screen is not None:
            screen.retry({"ids": [self.key]})
            self.load()


def _when(value: str | None) -> str:
    """Where the detail has room: the absolute time, with how long ago."""
    if not value:
        return ""
    return f"{value[:19].replace('T', ' ')} UTC"


def summary(d: TaskDetail, now: float) -> Text:
    t = d.task
    out = Text.assemble((t.key, "bold"), f"  {t.task_type}  ", ("queue ", "dim"), t.queue or "?", "  ",
                        ("account ", "dim"), f"{t.account_id} {t.label}  ",
                        (t.status, TASK_STATUS_STYLE.get(t.status, "")), ("  attempts ", "dim"), str(t.attempts),
                        "\n")
    updated = parse_time(t.updated_at)
    out.append_text(Text.assemble(("created ", "dim"), _when(t.created_at), ("   updated ", "dim"),
                                  _when(t.updated_at), f" ({ago(max(0.0, now - updated))})" if updated else ""))
    if t.retry_at:
        out.append_text(Text.assemble(("   retry at ", "dim"), _when(t.retry_at)))
    if t.blocked_by:
        out.append_text(Text.assemble("\n", ("blocked by ", "dim"), t.blocked_by))
    error = ": ".join(p for p in (t.last_error_code, t.last_error) if p)
    out.append_text(Text.assemble("\n", ("last error ", "dim"), error or "none"))
    return out

