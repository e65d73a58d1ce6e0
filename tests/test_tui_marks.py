"""Marks and bulk answers apart from a running app: what mark all, invert and clear do to a table's rows, the
progress line of a bulk action under way, and the one-line summary of its answer (the CLI's too)."""

from __future__ import annotations

import time
from typing import Any

from tgdaemon.display import bulk_summary
from tgdaemon.wire import BulkRefusal, BulkResult
from tgtui.model import FleetModel
from tgtui.progress import SHOW_AFTER_SECONDS, Running
from tgtui.table import Column, RowSet
from tgtui.widgets.table import LineTable


def table(n: int) -> LineTable:
    rowset = RowSet([Column("id", "ID", 4, lambda r, now: str(r["id"])),
                     Column("label", "Label", 8, lambda r, now: r["label"])])
    rowset.rebuild([{"id": i, "label": "even" if i % 2 == 0 else "odd"} for i in range(1, n + 1)], 0.0)
    return LineTable(rowset, lambda: 0.0, markable=True)


def refilter(t: LineTable, text: str, n: int) -> None:
    t.rowset.filter = text
    t.rowset.rebuild([{"id": i, "label": "even" if i % 2 == 0 else "odd"} for i in range(1, n + 1)], 0.0)


def test_mark_all_invert_and_clear_act_on_the_rows_shown() -> None:
    t = table(10)
    refilter(t, "label:even", 10)
    t.mark_all()  # every row the filter shows, none it hides
    assert t.marked == {2, 4, 6, 8, 10} and t.targets() == [2, 4, 6, 8, 10] and t.marked_count() == 5
    refilter(t, "", 10)
    assert t.marked_count() == 5
    t.marked -= {2}
    refilter(t, "label:odd", 10)
    t.marked |= {1}
    t.invert_marks()  # among the odd rows shown; the even marks, hidden now, stay as they were
    assert t.marked == {3, 5, 7, 9} | {4, 6, 8, 10}
    assert t.marked_count() == 4 and t.targets() == [3, 5, 7, 9]
    t.clear_marks()
    assert t.marked == set() and t.marked_count() == 0


def result(action: str, **counts: Any) -> BulkResult:
    fields: dict[str, Any] = {"matched": 0, "changed": 0, "unchanged": 0, "refused": 0, "refusals": [], "tasks": 0,
                              "would_change": [], "dry_run": False, **counts}
    return BulkResult(action=action, **fields)


def test_the_summary_says_what_changed_what_already_was_and_the_first_refusal() -> None:
    assert bulk_summary(result("disable", matched=1003, changed=1000, unchanged=3), "account") == (
        "disabled 1,000 accounts; 3 already disabled")
    assert bulk_summary(result("enable", matched=2, unchanged=2), "account") == "enabled 0 accounts; 2 already enabled"
    assert bulk_summary(result("retry", matched=4, changed=3, unchanged=1, tasks=7), "account") == (
        "retried 3 accounts, 7 tasks due now; 1 had nothing to retry")
    refused = result("pause", matched=3, changed=1, unchanged=1, refused=1,
                     refusals=[BulkRefusal(id=4, reason="quota 4 expired at 2026-01-01T00:00:00Z: there is nothing"
                                                       " to pause")])
    assert bulk_summary(refused, "quota") == (
        "paused 1 quota; 1 already paused; 1 refused (quota 4 expired at 2026-01-01T00:00:00Z: there is nothing to"
        " pause)")
    assert bulk_summary(result("disable", matched=5, changed=5, dry_run=True), "account") == "would disable 5 accounts"


def test_the_progress_line_counts_the_targeted_rows_the_stream_shows_changed() -> None:
    model = FleetModel(time.time)
    model.accounts = {i: {"id": i, "state": "disabled" if i <= 3 else "ready"} for i in range(1, 11)}
    model.quotas = {1: {"id": 1, "paused": True}, 2: {"id": 2, "paused": False}}
    assert Running("disable", "account", [1, 2, 3, 4]).line(model) is None  # just started: no line yet
    started = time.monotonic() - SHOW_AFTER_SECONDS - 2
    line = Running("disable", "account", [1, 2, 3, 4, 99], started).line(model)
    assert line is not None and line.startswith("disabling 5 accounts… 3 of 5 show it (") and line.endswith(" s)")
    assert Running("enable", "account", [1, 5], started).shown(model) == 1
    assert Running("pause", "quota", [1, 2], started).shown(model) == 1
    assert Running("resume", "quota", [1, 2], started).shown(model) == 1
    retry = Running("retry", "account", [1, 2], started)
    assert retry.shown(model) is None and (retry.line(model) or "").startswith("retrying 2 accounts… (")
