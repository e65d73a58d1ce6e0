"""The quotas view: progress, timing, inspection and a sparkline of views for each quota."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType

from tgdaemon.display import QUOTA_STATE_STYLE
from tgdaemon.wire import quota_state
from tgtui.fmt import ago, bar, percent, sparkline
from tgtui.model import FleetModel, parse_time
from tgtui.screens.base import FleetScreen
from tgtui.table import Column, Row, RowSet
from tgtui.widgets.table import MARK_BINDINGS, LineTable

BAR_WIDTH = 10
SPARK_WIDTH = 12


def left(row: Row) -> int | None:
    return row["quantity_left"] if row["quantity_left"] is not None else row["orders_left"]


def done_total(row: Row) -> tuple[int, int]:
    total = row["quantity_total"] or 0
    remaining = left(row)
    return (total - remaining if remaining is not None else 0), total


def _progress(row: Row, now: float) -> Text:
    done, total = done_total(row)
    return Text.assemble(bar(done, total, BAR_WIDTH), f" {percent(done, total):>4}")


def _progress_sort(row: Row, now: float) -> float:
    done, total = done_total(row)
    return done / total if total else 0.0


def state(row: Row, now: float) -> str:
    """Derived again here as the clock moves: no delta comes when a quota expires."""
    return quota_state(row["paused"], parse_time(row["expires_at"]), left(row), now)


def state_text(row: Row, now: float) -> Text:
    name = state(row, now)
    return Text(name, QUOTA_STATE_STYLE[name])


def next_run(row: Row, now: float) -> str:
    """A countdown only while the quota runs; the State column says why not otherwise."""
    return ago(row["next_run_at"], now, "due") if state(row, now) == "active" else ""


def expires(row: Row, now: float) -> str:
    return ago(row["expires_at"], now, "expired", empty="never")


def left_of_total(row: Row, now: float = 0.0) -> str:
    return f"{left(row) or 0}/{row['quantity_total'] or 0}"


def _time_sort(field: str) -> Callable[[Row, float], float]:
    return lambda row, now: parse_time(row[field]) or 0.0


def inspection(row: Row, now: float = 0.0) -> Text:
    ok = row["inspection_ok"]
    return Text("pending", "yellow") if ok is None else Text("ok", "green") if ok else Text("failed", "red")


def last_error(row: Row, now: float = 0.0) -> str:
    return row["last_error"] or row["inspection_error"] or ""


def quota_columns(model: FleetModel) -> list[Column]:
    def views(row: Row, now: float) -> Text:
        return sparkline(model.views.get(row["id"], []), SPARK_WIDTH) if row["action"] == "post_stats" else Text("")

    return [
        Column("name", "Name", 10, lambda r, n: r["name"], flex=True),
        Column("state", "State", 7, state_text, timed=True, drop=1),
        Column("target", "Target", 16, lambda r, n: r["target"], drop=5),
        Column("action", "Action", 13, lambda r, n: r["action"], drop=6),
        Column("progress", "Progress", BAR_WIDTH + 5, _progress, sort=_progress_sort),
        Column("left", "Left/total", 10, left_of_total, sort=lambda r, n: left(r) or 0, right=True),
        Column("next", "Next run", 9, next_run, sort=_time_sort("next_run_at"), timed=True, right=True),
        Column("expires", "Expires", 9, expires, sort=_time_sort("expires_at"), timed=True, right=True),
        Column("inspection", "Inspect", 7, inspection, drop=3),
        Column("error", "Last error", 10, last_error, flex=True, drop=4),
        Column("views", "Views", SPARK_WIDTH, views, sort=lambda r, n: sum(model.views.get(r["id"], ())),
               drop=2, cached=False),  # drawn from the model's measurements, not the row
    ]


class QuotasScreen(FleetScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "mark", "Mark", key_display="␣"),
        *MARK_BINDINGS,
        Binding("p", "app.pause", "Pause/resume"),
    ]
    MARKABLE = True
    NOUN = "quota"
    EMPTY = "no quotas (add one with `tgdaemon quotas add`)"

    def make_rowset(self) -> RowSet:
        return RowSet(quota_columns(self.fleet.model))

    def rows(self) -> Iterable[Row]:
        return self.fleet.model.quotas.values()

    def rev(self) -> int:
        return self.fleet.model.quotas_rev

    def on_line_table_chosen(self, event: LineTable.Chosen) -> None:
        self.fleet.open_quota(event.key)
