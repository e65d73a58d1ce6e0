"""The balancer's plan (tgdaemon/nodes/balancer.py): pure, so checked on counts alone, without a store."""

from __future__ import annotations

import pytest

from tgdaemon.nodes.balancer import Move, plan, targets, weights
from tgdaemon.store.api import Assignment


def assignment(assigned: dict[str, int], *, pinned: dict[str, int] | None = None, orphans: int = 0) -> Assignment:
    pins = {name: 0 for name in assigned} | (pinned or {})
    return Assignment(assigned=assigned, pinned=pins, orphans=orphans, pinned_away=0)


def apply(a: Assignment, moves: list[Move]) -> dict[str, int]:
    load = dict(a.assigned)
    for move in moves:
        if move.src is not None:
            load[move.src] -= move.n
        load[move.dst] += move.n
    return load


def test_a_fresh_fleet_is_spread_evenly_at_once() -> None:
    a = assignment({"a": 0, "b": 0, "c": 0}, orphans=50)
    moves = plan({"a": 0, "b": 0, "c": 0}, a, max_moves=5)
    assert all(m.src is None for m in moves)  # orphans only: not limited by max_moves
    assert sorted(apply(a, moves).values()) == [16, 17, 17]


def test_weights_follow_max_accounts_and_a_node_without_one_weighs_the_mean() -> None:
    assert weights({"a": 0, "b": 0}) == {"a": 1.0, "b": 1.0}
    assert weights({"a": 100, "b": 300, "c": 0}) == {"a": 100.0, "b": 300.0, "c": 200.0}
    assert targets({"a": 100, "b": 300, "c": 0}, {}, 60) == {"a": 10, "b": 30, "c": 20}


def test_a_cap_is_never_exceeded_and_its_excess_goes_to_the_others() -> None:
    assert targets({"a": 10, "b": 0, "c": 0}, {}, 90) == {"a": 10, "b": 40, "c": 40}


def test_when_every_node_is_full_the_orphans_wait() -> None:
    a = assignment({"a": 5, "b": 5}, orphans=20)
    moves = plan({"a": 10, "b": 10}, a, max_moves=100)
    assert apply(a, moves) == {"a": 10, "b": 10}
    assert sum(m.n for m in moves) == 10  # 10 of the 20 orphans placed, the rest stay


def test_a_joining_node_fills_gradually_from_the_most_loaded() -> None:
    a = assignment({"a": 60, "b": 40, "new": 0})
    moves = plan({"a": 0, "b": 0, "new": 0}, a, max_moves=8)
    assert sum(m.n for m in moves) == 8
    assert all(m.dst == "new" for m in moves)
    assert moves[0].src == "a"  # the most over its target (33 or 34) goes first
    load = dict(a.assigned)
    for _ in range(20):  # bounded: heartbeats until balanced
        step = plan({"a": 0, "b": 0, "new": 0}, Assignment(load, dict.fromkeys(load, 0), 0, 0), max_moves=8)
        if not step:
            break
        assert sum(m.n for m in step) <= 8
        load = apply(Assignment(load, dict.fromkeys(load, 0), 0, 0), step)
    assert sorted(load.values()) == [33, 33, 34]


def test_a_balanced_fleet_makes_no_moves() -> None:
    assert plan({"a": 0, "b": 0}, assignment({"a": 25, "b": 25}), max_moves=100) == []
    assert plan({"a": 0, "b": 0}, assignment({"a": 26, "b": 25}), max_moves=100) == []  # one off: rounding


def test_pinned_accounts_count_toward_their_node_and_never_move() -> None:
    # b holds 30 pinned accounts: the 30 others all belong on a, none of b's pinned may leave it
    a = assignment({"a": 0, "b": 60}, pinned={"b": 30})
    moves = plan({"a": 0, "b": 0}, a, max_moves=100)
    assert apply(a, moves) == {"a": 30, "b": 30}
    # more pinned than an even share: the node keeps them all, the others share the rest
    a = assignment({"a": 10, "b": 40, "c": 10}, pinned={"b": 40})
    assert targets({"a": 0, "b": 0, "c": 0}, {"b": 40}, 60) == {"a": 10, "b": 40, "c": 10}
    assert plan({"a": 0, "b": 0, "c": 0}, a, max_moves=100) == []


def test_a_dead_nodes_accounts_are_orphans_handed_out_at_once_to_the_emptiest() -> None:
    a = assignment({"a": 40, "b": 20}, orphans=30)  # c died holding 30
    moves = plan({"a": 0, "b": 0}, a, max_moves=1)
    assert moves == [Move(None, "b", 25), Move(None, "a", 5)]  # b was furthest below its 45
    assert apply(a, moves) == {"a": 45, "b": 45}


@pytest.mark.parametrize("total", [2, 3, 7, 1000, 10_000])
def test_targets_add_up_to_every_account_and_stay_within_pins_and_caps(total: int) -> None:
    caps = {"a": 0, "b": 300, "c": 7, "d": 0}
    got = targets(caps, {"c": 2}, total)  # the total counts c's 2 pinned accounts
    assert sum(got.values()) == total
    assert 2 <= got["c"] <= 7 and got["b"] <= 300
    assert abs(got["a"] - got["d"]) <= 1
