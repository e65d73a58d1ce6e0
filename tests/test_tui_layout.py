"""The table's columns at a width (what each gets, the sort arrow's room) and the row set's kept filter texts.

Widget-free: ``layout`` and ``RowSet`` are plain functions of their inputs, and the model is fed deltas as the
stream would send them.
"""

from __future__ import annotations

import random
from typing import Any

from tgtui.model import FleetModel
from tgtui.screens.accounts import ACCOUNT_COLUMNS
from tgtui.table import (
    ARROW,
    NARROW_SECONDS,
    Column,
    RowSet,
    layout,
    narrows,
    parse_filter,
)

NOW = 1_800_000_000.0


def blank(row: dict[str, Any], now: float) -> str:
    return ""


def widths(shown: list[tuple[Column, int]]) -> dict[str, int]:
    return {c.key: w for c, w in shown}


def test_the_sorted_column_has_room_for_its_title_and_the_arrow() -> None:
    cols = [Column("id", "ID", 4, blank), Column("cooldown", "Cooldown", 8, blank),
            Column("error", "Last error", 10, blank, flex=True, drop=1)]
    assert widths(layout(cols, 40))["cooldown"] == 8
    assert widths(layout(cols, 40, sort="cooldown"))["cooldown"] == len("Cooldown") + ARROW
    # too narrow for both: the droppable column goes, the sorted title stays whole
    assert widths(layout(cols, 16, sort="cooldown")) == {"id": 4, "cooldown": 10}


def test_spare_width_goes_to_cut_columns_then_to_flex_columns_with_content() -> None:
    cols = [Column("label", "Label", 8, blank), Column("proxy", "Proxy", 10, blank),
            Column("error", "Last error", 10, blank, flex=True), Column("message", "Message", 10, blank, flex=True)]
    # nothing known of the rows: the flex columns share the spare as before
    assert widths(layout(cols, 60)) == {"label": 8, "proxy": 10, "error": 20, "message": 19}
    # the errors are all empty on screen, the proxies cut: the proxy gets what it needs, the message the rest
    shown = widths(layout(cols, 60, wants={"label": 6, "proxy": 22, "error": 0, "message": 15}))
    assert shown == {"label": 8, "proxy": 22, "error": 10, "message": 17}
    # two cut columns share a spare too small for both, evenly; a blank column lends down to its title's width
    shown = widths(layout(cols, 47, wants={"label": 20, "proxy": 30, "error": 0, "message": 0}))
    assert shown == {"label": 13, "proxy": 14, "error": 10, "message": len("Message")}
    # every column has what it needs and no flex column has content: the spare is left blank at the right
    assert widths(layout(cols, 80, wants={"label": 3})) == {"label": 8, "proxy": 10, "error": 10, "message": 10}


def test_columns_drop_in_their_order_whatever_their_content() -> None:
    shown = layout(ACCOUNT_COLUMNS, 78, sort="id", wants={"error": 14, "proxy": 26})
    assert [c.key for c, _ in shown] == ["id", "label", "state", "cooldown", "setup", "owner", "error"]
    assert sum(w for _, w in shown) + len(shown) - 1 <= 78


def account(aid: int, **fields: Any) -> dict[str, Any]:
    row = {"id": aid, "label": f"sim-{aid:04d}", "phone_masked": None, "state": "ready", "is_probe": False,
           "executor": None, "cooldown_until": None, "setup": {"done": 8, "total": 8}, "last_error_code": None,
           "owner": "node-a", "pinned_node": None, "health": "ok", "proxy": None}
    row.update(fields)
    return row


def delta(seq: int, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": "delta", "seq": seq, "kind": "account", "op": "upsert", "data": data}


def fed_model(n: int) -> FleetModel:
    model = FleetModel(lambda: NOW)
    model.apply({"type": "snapshot", "epoch": "e", "seq": 1, "status": {}, "events": [], "quotas": [],
                 "accounts": [account(i) for i in range(1, n + 1)]})
    return model


def shown(rowset: RowSet) -> list[int]:
    return [r["id"] for r in rowset.rows]


def test_a_delta_that_changes_a_row_is_found_then_unfound_by_the_filter() -> None:
    """The kept text belongs to the row's dict: the dict a delta brings is searched again."""
    model = fed_model(20)
    rowset = RowSet(ACCOUNT_COLUMNS)
    assert rowset.warm(model.accounts.values(), model.accounts_rev, 100)
    rowset.filter = "flood"
    rowset.rebuild(model.accounts.values(), NOW, model.accounts_rev)
    assert shown(rowset) == []
    model.apply(delta(2, account(7, last_error_code="FLOOD_WAIT_420")))
    rowset.rebuild(model.accounts.values(), NOW, model.accounts_rev)
    assert shown(rowset) == [7]
    rowset.filter = "error:flood_w"  # one column's kept text, not the whole row's
    rowset.rebuild(model.accounts.values(), NOW, model.accounts_rev)
    assert shown(rowset) == [7]
    model.apply(delta(3, account(7, last_error_code=None)))
    rowset.rebuild(model.accounts.values(), NOW, model.accounts_rev)
    assert shown(rowset) == []


def test_a_growing_filter_narrows_only_over_the_same_rows() -> None:
    """One more character at the same revision searches only the rows shown; after a delta, every row again."""
    model = fed_model(30)
    rowset = RowSet(ACCOUNT_COLUMNS)
    rowset.filter = "sim-00"
    rowset.rebuild(model.accounts.values(), NOW, model.accounts_rev)
    assert len(rowset.rows) == 30
    rowset.filter = "sim-001"
    rowset.rebuild(model.accounts.values(), NOW + 0.1, model.accounts_rev)
    assert shown(rowset) == list(range(10, 20))
    model.apply(delta(2, account(25, label="sim-0015b")))  # now matches "sim-0015", but was not shown
    rowset.filter = "sim-0015"
    rowset.rebuild(model.accounts.values(), NOW + 0.2, model.accounts_rev)
    assert shown(rowset) == [15, 25]


def test_a_narrowed_filter_is_searched_whole_again_once_the_clock_has_moved() -> None:
    """A cooldown that runs out makes a row ``ready`` without a delta: after NARROW_SECONDS it is found."""
    model = fed_model(3)
    model.apply(delta(2, account(2, state="cooldown", cooldown_until="2027-01-15T08:00:30Z")))
    ended, rev = model.accounts[2]["_until"], model.accounts_rev
    rowset = RowSet(ACCOUNT_COLUMNS)
    rowset.filter = "state:re"
    rowset.rebuild(model.accounts.values(), ended - 0.5, rev)
    assert shown(rowset) == [1, 3]
    rowset.filter = "state:rea"
    rowset.rebuild(model.accounts.values(), ended - 0.5 + NARROW_SECONDS + 0.1, rev)
    assert shown(rowset) == [1, 2, 3]


def test_narrowed_results_are_the_ones_a_whole_search_finds() -> None:
    rng = random.Random(15)
    model = FleetModel(lambda: NOW)
    states = ("ready", "busy", "disabled", "cooldown")
    model.apply({"type": "snapshot", "epoch": "e", "seq": 1, "status": {}, "events": [], "quotas": [],
                 "accounts": [account(i, state=rng.choice(states), executor=rng.choice(("fast", "media", None)),
                                      last_error_code=rng.choice((None, "FLOOD_WAIT_420", "PEER_FLOOD")))
                              for i in range(1, 400)]})
    typed = ["sim-01", "state:busy", "executor:me flood", "fast peer", "sim-02 state:re"]
    rowset = RowSet(ACCOUNT_COLUMNS, sort="label", desc=True)
    for text in typed:
        for k in range(1, len(text) + 1):
            rowset.filter = text[:k]
            if rowset.check_filter(rowset.filter):
                continue
            rowset.rebuild(model.accounts.values(), NOW, model.accounts_rev)
            whole = RowSet(ACCOUNT_COLUMNS, sort="label", desc=True)
            whole.filter = rowset.filter
            whole.rebuild(model.accounts.values(), NOW)
            assert shown(rowset) == shown(whole), rowset.filter
            assert rowset.index == whole.index
            if whole.rows:
                assert rowset.position(shown(whole)[-1]) == len(whole.rows) - 1


def test_which_filters_narrow_which() -> None:
    def n(old: str, new: str) -> bool:
        return narrows(parse_filter(old), parse_filter(new))

    assert n("sim", "sim-0") and n("state", "state:") and n("state:c", "state:co") and n("a b", "ab")
    assert n("sim", "sim state:busy") and n("busy", "state:busy")
    assert not n("state:", "state:c") and not n("sim-01", "sim-0") and not n("state:c", "error:c")


def test_warming_goes_on_to_every_row_while_deltas_come() -> None:
    model = fed_model(50)
    rowset = RowSet(ACCOUNT_COLUMNS)
    calls = 0
    seq = 2
    while not rowset.warm(model.accounts.values(), model.accounts_rev, 20):
        calls += 1
        assert calls < 20
        if seq < 6:  # a delta between the first calls: the pass goes on, and another follows for the new dicts
            model.apply(delta(seq, account(seq, label=f"renamed-{seq}")))
            seq += 1
    assert all(rowset._texts[i][0] is model.accounts[i] for i in model.accounts)
    rowset.filter = "renamed-3"
    rowset.rebuild(model.accounts.values(), NOW, model.accounts_rev)
    assert shown(rowset) == [3]


def test_a_tick_taken_in_row_by_row_is_the_order_a_whole_rebuild_makes() -> None:
    """Deltas placed one by one among the rows shown end in the order (and filter) of a whole rebuild at the same
    clock, for every column, both ways, filtered or not; the model knows which rows each delta changed."""
    rng = random.Random(7)
    model = FleetModel(lambda: NOW)
    states = ("ready", "busy", "disabled", "cooldown")

    def some(aid: int) -> dict[str, Any]:
        state = rng.choice(states)
        return account(aid, state=state, executor=rng.choice(("fast", "media", None)),
                       last_error_code=rng.choice((None, "FLOOD_WAIT_420", "PEER_FLOOD")),
                       cooldown_until=f"2027-01-15T08:{rng.randint(0, 59):02d}:00Z" if state == "cooldown" else None,
                       setup={"done": rng.randint(0, 8), "total": 8})

    model.apply({"type": "snapshot", "epoch": "e", "seq": 1, "status": {}, "events": [], "quotas": [],
                 "accounts": [some(i) for i in range(1, 300)]})
    assert model.accounts_changed(model.accounts_rev - 1) is None  # before the snapshot: not known row by row
    now = model.accounts[1].get("_until") or 1_800_000_000.0
    seq = 2
    for sort in [c.key for c in ACCOUNT_COLUMNS]:
        for desc in (False, True):
            for text in ("", "state:cooldown", "flood"):
                rowset = RowSet(ACCOUNT_COLUMNS, sort=sort, desc=desc)
                rowset.filter = text
                rowset.rebuild(model.accounts.values(), now, model.accounts_rev, model.accounts_changed)
                for _ in range(3):
                    since = model.accounts_rev
                    for aid in rng.sample(range(1, 300), 20):
                        model.apply(delta(seq, some(aid)))
                        seq += 1
                    assert {r["id"] for r in model.accounts_changed(since) or []} <= set(range(1, 300))
                    rowset.rebuild(model.accounts.values(), now, model.accounts_rev, model.accounts_changed)
                    whole = RowSet(ACCOUNT_COLUMNS, sort=sort, desc=desc)
                    whole.filter = text
                    whole.rebuild(model.accounts.values(), now)
                    assert shown(rowset) == shown(whole), (sort, desc, text)
