"""The dashboard's widget-free parts: the model fed by the stream, the row set, the small renderings."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from textual.binding import Binding
from textual.keys import format_key

from tgdaemon.timeutil import iso
from tgtui.app import key_map
from tgtui.fmt import bar, sparkline
from tgtui.model import FleetModel, effective_state, heartbeat_age, quota_is_open
from tgtui.screens.quotas import quota_columns
from tgtui.table import Column, RowSet, layout, parse_filter

NOW = 1_800_000_000.0


def account(aid: int, state: str = "ready", until: str | None = None) -> dict[str, Any]:
    return {"id": aid, "label": f"ops-{aid}", "state": state, "cooldown_until": until}


def delta(seq: int, data: dict[str, Any], kind: str = "account") -> dict[str, Any]:
    return {"type": "delta", "seq": seq, "kind": kind, "op": "upsert", "data": data}


def test_model_applies_a_snapshot_then_consecutive_deltas_and_reports_a_gap() -> None:
    model = FleetModel(lambda: NOW)
    assert model.since is None
    model.apply({"type": "snapshot", "epoch": "e1", "seq": 5, "status": {"uptime_seconds": 10.0},
                 "accounts": [account(1), account(2)], "events": [], "quotas": []})
    assert model.since == "e1:5" and set(model.accounts) == {1, 2}
    rev = model.accounts_rev
    assert model.apply(delta(5, account(1, "busy")))  # already in the snapshot: ignored
    assert model.accounts[1]["state"] == "ready" and model.accounts_rev == rev
    assert model.apply(delta(6, account(1, "cooldown", "2027-02-01T00:00:00Z")))
    assert model.accounts[1]["state"] == "cooldown" and model.accounts_rev == rev + 1
    assert model.apply({"type": "resync"})
    assert not model.apply(delta(8, account(2, "disabled")))  # 7 is missing: reconnect
    assert model.accounts[2]["state"] == "ready" and model.since == "e1:6"


def frame(kind: str, more: bool, accounts: list[dict[str, Any]], **lists: Any) -> dict[str, Any]:
    return {"type": kind, "accounts": accounts, "quotas": lists.get("quotas", []), "events": lists.get("events", []),
            "more": more, **({"epoch": "e1", "seq": lists["seq"], "status": lists.get("status", {})}
                             if kind == "snapshot" else {})}


def test_a_snapshot_in_frames_fills_the_model_as_they_come_and_at_its_end_drops_what_it_did_not_name() -> None:
    model = FleetModel(lambda: NOW)
    model.apply(frame("snapshot", True, [account(1), account(2)], seq=5, events=[{"id": 5}],
                      status={"accounts": {"ready": 3, "busy": 1}}))
    assert set(model.accounts) == {1, 2} and [e["id"] for e in model.events] == [5]
    assert model.loading is not None and (model.loading.accounts, model.loading.expected) == (2, 4)
    assert model.since is None  # half a snapshot: a reconnect now must ask for a whole one, not resume from 5
    rev, quotas_rev = model.accounts_rev, model.quotas_rev
    model.apply(frame("snapshot_part", True, [account(3)], quotas=[{"id": 1}]))
    assert set(model.accounts) == {1, 2, 3} and model.accounts_rev == rev + 1 and model.quotas_rev == quotas_rev + 1
    model.apply(frame("snapshot_part", False, [account(4)]))
    assert model.loading is None and model.since == "e1:5" and set(model.accounts) == {1, 2, 3, 4}
    assert model.apply(delta(6, account(4, "busy"))) and model.since == "e1:6"

    assert model.apply({"type": "resync"})  # a new snapshot on the same socket: the old rows stay until it ends
    model.apply(frame("snapshot", True, [account(2, "busy")], seq=9))
    assert set(model.accounts) == {1, 2, 3, 4} and model.accounts[2]["state"] == "busy" and model.since is None
    assert not model.events
    model.apply(frame("snapshot_part", False, [account(4)]))
    assert set(model.accounts) == {2, 4} and model.quotas == {} and model.since == "e1:9"
    assert model.accounts[4]["state"] == "ready"  # as the new snapshot has it

    assert model.apply(frame("snapshot_part", False, [account(7)]))  # a part whose start this model never saw
    assert 7 not in model.accounts and model.since == "e1:9"
    model.apply({"type": "snapshot", "epoch": "e2", "seq": 1, "status": {}, "accounts": [account(8)],
                 "quotas": [], "events": []})  # a snapshot the client assembled: no "more", complete at once
    assert set(model.accounts) == {8} and model.loading is None and model.since == "e2:1"


def test_a_cooldown_that_ran_out_reads_as_ready_without_a_delta() -> None:
    model = FleetModel(lambda: NOW)
    model.apply({"type": "snapshot", "epoch": "e", "seq": 0, "status": {}, "events": [], "accounts": [
        account(1, "cooldown", "2027-02-01T00:00:00Z"), account(2, "cooldown", "2020-01-01T00:00:00Z")]})
    assert effective_state(model.accounts[1], NOW) == "cooldown"
    assert effective_state(model.accounts[2], NOW) == "ready"
    assert model.counts(NOW) == {"ready": 1, "busy": 0, "cooldown": 1, "disabled": 0, "inactive": 0}


def test_counts_kept_as_rows_come_are_a_count_of_every_row() -> None:
    """By state, kept as each row goes in or out; only a cooldown's end is read from the clock at the count."""
    rng = random.Random(13)
    model = FleetModel(lambda: NOW)

    def some(ids: range) -> list[dict[str, Any]]:
        until = ("2027-02-01T00:00:00Z", "2020-01-01T00:00:00Z", None)
        return [account(i, rng.choice(("ready", "busy", "cooldown", "disabled", "inactive")), rng.choice(until))
                for i in ids]

    def brute() -> dict[str, int]:
        out = dict.fromkeys(("ready", "busy", "cooldown", "disabled", "inactive"), 0)
        for row in model.accounts.values():
            out[effective_state(row, NOW)] += 1
        return out

    model.apply(frame("snapshot", True, some(range(1, 60)), seq=1))
    model.apply(frame("snapshot_part", False, some(range(60, 120))))
    for seq in range(2, 300):
        model.apply(delta(seq, some(range(n := rng.randrange(1, 150), n + 1))[0]))
    assert model.counts(NOW) == brute() and sum(brute().values()) == len(model.accounts)
    model.apply(frame("snapshot", False, some(range(50, 90)), seq=400))  # drops the rows it does not name
    assert set(model.accounts) == set(range(50, 90)) and model.counts(NOW) == brute()


def test_views_are_the_gains_each_measurement_found() -> None:
    model = FleetModel(lambda: NOW)
    model.set_views(1, [{"post_id": 10, "views": 100}, {"post_id": 11, "views": 50}, {"post_id": 10, "views": 130},
                        {"post_id": 11, "views": None}, {"post_id": 11, "views": 55}])
    assert model.views[1] == [0.0, 0.0, 30.0, 5.0]


def test_row_set_filters_by_column_and_words_and_sorts_with_ties_by_id() -> None:
    columns = [Column("id", "ID", 4, lambda r, n: str(r["id"]), sort=lambda r, n: r["id"]),
               Column("label", "Label", 8, lambda r, n: r["label"]),
               Column("state", "State", 8, lambda r, n: effective_state(r, n), timed=True)]
    rows = [account(1, "busy"), account(2), account(3, "busy"), account(12)]
    rowset = RowSet(columns, sort="state", desc=True)
    rowset.rebuild(rows, NOW)
    assert [r["id"] for r in rowset.rows] == [12, 2, 3, 1] and rowset.index[3] == 2
    rowset.filter = "state:busy"
    rowset.rebuild(rows, NOW)
    assert [r["id"] for r in rowset.rows] == [3, 1] and rowset.timed
    rowset.filter = "OPS-1"
    rowset.rebuild(rows, NOW)
    assert [r["id"] for r in rowset.rows] == [12, 1]
    assert parse_filter("Ops state:Busy x:") == (["ops", "x:"], {"state": "busy"})
    assert rowset.check_filter("colour:red") == "unknown column 'colour' in the filter; columns: id, label, state"


def test_row_set_sorts_by_the_key_column_and_by_others_with_ties_by_the_key_in_the_sort_order() -> None:
    columns = [Column("id", "ID", 4, lambda r, n: str(r["id"]), sort=lambda r, n: r["id"]),
               Column("label", "Label", 8, lambda r, n: r["label"])]
    rows = [{"id": i, "label": "ab"[i % 2]} for i in (5, 3, 8, 1, 4)]
    rowset = RowSet(columns)
    rowset.rebuild(rows, NOW)
    assert [r["id"] for r in rowset.rows] == [1, 3, 4, 5, 8] and rowset.index == {1: 0, 3: 1, 4: 2, 5: 3, 8: 4}
    rowset.desc = True
    rowset.rebuild(rows, NOW)
    assert [r["id"] for r in rowset.rows] == [8, 5, 4, 3, 1]
    rowset.sort = "label"
    rowset.rebuild(rows, NOW)
    assert [(r["label"], r["id"]) for r in rowset.rows] == [("b", 5), ("b", 3), ("b", 1), ("a", 8), ("a", 4)]
    rowset.desc = False
    rowset.rebuild(rows, NOW)
    assert [(r["label"], r["id"]) for r in rowset.rows] == [("a", 4), ("a", 8), ("b", 1), ("b", 3), ("b", 5)]


def test_layout_drops_columns_in_order_and_fills_the_width() -> None:
    cols = [Column("a", "A", 10, str), Column("b", "B", 10, str, drop=1), Column("c", "C", 10, str, drop=2),
            Column("d", "D", 5, str, flex=True)]
    assert [(c.key, w) for c, w in layout(cols, 80)] == [("a", 10), ("b", 10), ("c", 10), ("d", 47)]
    assert [(c.key, w) for c, w in layout(cols, 30)] == [("a", 10), ("b", 10), ("d", 8)]
    assert [c.key for c, _ in layout(cols, 5)] == ["a", "d"]


def test_renderings() -> None:
    assert bar(1, 2, 4).plain == "██··" and bar(0, 0, 3).plain == "···"
    assert bar(3, 16, 2).plain == "▍·"  # horizontal eighths: 3/16 of two cells is three eighths of one
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7], 8).plain == "▁▂▃▄▅▆▇█"
    assert sparkline([1, 1, 5, 5], 2).plain == "▂█"  # summed in pairs: 2 and 10
    assert sparkline([], 5).plain == ""


def test_the_documented_key_map_lists_every_key() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "dashboard.md").read_text()
    for _, bindings in key_map():
        for binding in bindings:
            assert isinstance(binding, Binding)
            for key in binding.key.split(","):
                assert f"`{format_key(key.strip())}`" in doc, f"docs/dashboard.md does not list {key!r}"


def test_a_nodes_heartbeat_age_is_taken_on_the_databases_clock_then_runs_on_this_one() -> None:
    """The listing's ``at`` is the database's time: a host whose clock runs 10 minutes ahead still sees a node
    that beat a second before the listing as one second old, and the age grows with this clock."""
    now = [NOW + 600.0]  # this host's clock, ten minutes ahead of the database's
    model = FleetModel(lambda: now[0])
    db_now = "2027-01-15T08:00:00Z"
    model.set_nodes({"node": "a", "at": db_now, "nodes": [
        {"name": "a", "heartbeat_at": "2027-01-15T07:59:59Z"}, {"name": "b", "heartbeat_at": "2027-01-15T07:58:00Z"}]})
    assert model.nodes_rev == 1 and list(model.nodes) == ["a", "b"]
    assert heartbeat_age(model.nodes["a"], now[0]) == 1.0 and heartbeat_age(model.nodes["b"], now[0]) == 120.0
    now[0] += 5
    assert heartbeat_age(model.nodes["a"], now[0]) == 6.0
    model.set_status({"node": "a"})
    assert model.node == "a"


def test_a_quota_reads_expired_once_its_time_passes_without_a_delta() -> None:
    """The daemon sends no delta when a quota expires: the quotas view and the header's open count derive the
    state again from the row and the clock, by the daemon's own rule."""
    expires = 1_700_000_000.0
    row = {"id": 1, "name": "news", "paused": False, "expires_at": iso(expires), "quantity_left": 4,
           "orders_left": None, "quantity_total": 10, "next_run_at": iso(expires - 60), "inspection_ok": True}
    columns = {c.key: c for c in quota_columns(FleetModel(lambda: expires))}
    assert (columns["state"].text(row, expires - 1), columns["next"].text(row, expires - 1)) == ("active", "due")
    assert (columns["state"].text(row, expires + 1), columns["next"].text(row, expires + 1)) == ("expired", "")
    assert columns["state"].timed  # a sort or filter by state is refreshed as the clock moves
    assert [quota_is_open(row, t) for t in (expires - 1, expires + 1)] == [True, False]
    assert columns["state"].text({**row, "paused": True}, expires - 1) == "paused"
    assert columns["state"].text({**row, "quantity_left": 0}, expires + 1) == "done"
