"""Nodes, account ownership and the fleet's leadership on both drivers (design 9): registration, heartbeats,
the leadership's terms, acquisition (with what a new owner recovers), release, the balancer's counts and
moves, pins, and the account view's owner. Time is never waited for: heartbeats, leases and terms are aged
by writing the rows (tests/store/backdoor.py), against the database's own clock (``db_now``)."""

from __future__ import annotations

import asyncio
import json
import random

import asyncpg
import pytest

from store import backdoor
from store.conftest import Database
from tgdaemon.errors import NotFound
from tgdaemon.store import Store
from tgdaemon.store.api import NodeSpec, OwnedAccount
from tgdaemon.store.nodes import owned_digest
from tgdaemon.store.postgres.core import LOG_LOCK
from tgdaemon.timeutil import steady

DEAD = 10.0
LEASE = 15.0
LOCK = 600.0


def spec(name: str, incarnation: str = "i1", *, max_accounts: int = 0) -> NodeSpec:
    return NodeSpec(name=name, incarnation=incarnation, host=f"host-{name}", pid=4000 + len(incarnation),
                    version="12.0", http="127.0.0.1:8443", max_accounts=max_accounts)


async def seed(store: Store, n: int) -> list[int]:
    async with store.tx() as tx:
        await store.insert_accounts(tx, [{"phone": f"+1555100{i:04d}", "tg_user_id": 900 + i, "label": f"n{i}",
                                          "is_probe": 0, "profile_json": "{}"} for i in range(1, n + 1)])
    return list(range(1, n + 1))


async def up(store: Store, *names: str, lead: str | None = None) -> int | None:
    """Register the nodes (incarnation i1); ``lead``: that one takes the leadership; its epoch."""
    for name in names:
        assert await store.register_node(spec(name), dead_after=DEAD, lease_seconds=LEASE) is not None
    if lead is None:
        return None
    return (await store.renew_node(lead, "i1", lease_seconds=LEASE, lead=True)).leader_epoch


async def age(store: Store, name: str, seconds: float, *, lease_too: bool = True) -> None:
    """The node's last heartbeat ``seconds`` ago (and its lease renewed then, when ``lease_too``)."""
    at = await store.db_now() - seconds
    await backdoor.update(store, "nodes", {"name": name}, heartbeat_at=at,
                          **({"owned_until": at + LEASE} if lease_too else {}))


async def lapse(store: Store, name: str) -> None:
    """The node's lease has ended (and its heartbeat is older than dead_after)."""
    await age(store, name, LEASE + 1)


async def own(store: Store, name: str, ids: list[int], incarnation: str = "i1") -> list[OwnedAccount]:
    """Assign ``ids`` to ``name`` (by pinning and unpinning: a test's shortcut past the balancer) and acquire."""
    await store.pin_accounts(ids, name)
    await store.pin_accounts(ids, None)
    return await store.acquire_accounts(name, incarnation, 1000)


async def owners(store: Store) -> dict[int, tuple[str | None, int]]:
    return {r["id"]: (r["owner"], r["owner_epoch"]) for r in await backdoor.rows(store, "accounts")}


# --- registration and heartbeats ----------------------------------------------------------------------------------

# SQLite takes a name over at once: test_sqlite_takes_a_name_over_at_once
@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
async def test_registration_is_refused_for_a_live_name_and_allowed_once_it_died_or_stopped(store: Store) -> None:
    info = await store.register_node(spec("a"), dead_after=DEAD, lease_seconds=LEASE)
    assert info is not None
    assert (info.name, info.host, info.pid, info.version, info.http, info.alive, info.leader, info.accounts,
            info.stopped_at) == ("a", "host-a", 4002, "12.0", "127.0.0.1:8443", True, False, 0, None)
    assert info.heartbeat_at == info.started_at and info.owned_until == info.heartbeat_at + LEASE
    assert await store.register_node(spec("a", "i2"), dead_after=DEAD, lease_seconds=LEASE) is None
    assert await store.register_node(spec("a"), dead_after=DEAD, lease_seconds=LEASE) is not None  # its own again

    await age(store, "a", DEAD + 1)  # dead: a new incarnation may take the name
    again = await store.register_node(spec("a", "i2"), dead_after=DEAD, lease_seconds=LEASE)
    assert again is not None and again.alive and (await backdoor.row(store, "nodes", name="a"))["incarnation"] == "i2"
    assert not (await store.renew_node("a", "i1", lease_seconds=LEASE, lead=True)).held  # the old one must stop

    assert await store.stop_node("a", "i2") == 0
    assert await store.register_node(spec("a", "i3"), dead_after=DEAD, lease_seconds=LEASE) is not None  # at once
    assert [n.name for n in await store.list_nodes(DEAD)] == ["a"]
    kinds = [e["kind"] for e in await store.recent_events()]
    assert kinds.count("node.started") == 4 and kinds.count("node.stopped") == 1


async def test_a_renewal_moves_heartbeat_and_lease_and_fails_for_another_or_stopped_incarnation(store: Store) -> None:
    await up(store, "a")
    await age(store, "a", 5)
    renewal = await store.renew_node("a", "i1", lease_seconds=LEASE, lead=False)
    assert renewal.held and renewal.leader_epoch is None and renewal.owned_until == renewal.at + LEASE
    row = await backdoor.row(store, "nodes", name="a")
    assert (row["heartbeat_at"], row["owned_until"]) == (renewal.at, renewal.at + LEASE)
    assert abs(renewal.at - await store.db_now()) < 60
    assert not (await store.renew_node("a", "i9", lease_seconds=LEASE, lead=False)).held
    assert (await backdoor.row(store, "nodes", name="a"))["heartbeat_at"] == renewal.at  # unchanged by it
    await store.stop_node("a", "i1")
    assert not (await store.renew_node("a", "i1", lease_seconds=LEASE, lead=True)).held
    assert await backdoor.count(store, "leadership") == 0  # a refused renewal took nothing


async def test_list_nodes_says_who_is_alive_who_leads_and_how_many_accounts_each_owns(store: Store) -> None:
    await seed(store, 3)
    epoch = await up(store, "a", "b", "c", lead="b")
    assert epoch is not None
    await own(store, "b", [1, 2])
    await age(store, "c", DEAD + 1)
    listed = {n.name: n for n in await store.list_nodes(DEAD)}
    assert {k: (n.alive, n.leader, n.accounts) for k, n in listed.items()} == {
        "a": (True, False, 0), "b": (True, True, 2), "c": (False, False, 0)}


# PostgreSQL waits: test_a_restarted_incarnation_waits_for_its_predecessors_lease_then_...
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_sqlite_takes_a_name_over_at_once(store: Store) -> None:
    """One daemon per SQLite store (the data dir lock): an incarnation whose heartbeat still looks recent
    (kill -9 a second ago) is gone for certain, so the new one neither waits for it to be seen dead nor for
    its lease to end, and takes what it owned at its first acquisition (its running setup back to retry)."""
    await seed(store, 2)
    epoch = await up(store, "a", lead="a")
    assert epoch is not None
    await own(store, "a", [1, 2])
    await store.dispatch_setup({"update_name": {"first_name": "Ann"}})
    assert len(await store.claim_setup(["update_name"], 10, LOCK)) == 2
    info = await store.register_node(spec("a", "i2"), dead_after=DEAD, lease_seconds=LEASE)
    assert info is not None and (info.accounts, info.leader) == (0, False)
    assert not (await store.renew_node("a", "i1", lease_seconds=LEASE, lead=True)).held
    taken = await store.acquire_accounts("a", "i2", 10)
    assert [(o.id, o.epoch) for o in taken] == [(1, 2), (2, 2)]
    assert [t["status"] for t in await backdoor.rows(store, "account_tasks")] == ["retry", "retry"]
    again = (await store.renew_node("a", "i2", lease_seconds=LEASE, lead=True)).leader_epoch
    assert again is not None and again > epoch


# --- leadership -----------------------------------------------------------------------------------------------------

async def test_the_leadership_has_one_holder_a_new_epoch_per_term_and_is_taken_over_after_it_expires(
        store: Store) -> None:
    await up(store, "a", "b")
    assert (await store.renew_node("a", "i1", lease_seconds=LEASE, lead=False)).leader_epoch is None  # not asked
    assert await backdoor.count(store, "leadership") == 0
    first = (await store.renew_node("a", "i1", lease_seconds=LEASE, lead=True)).leader_epoch
    assert first is not None
    assert (await store.renew_node("b", "i1", lease_seconds=LEASE, lead=True)).leader_epoch is None
    renewed = await store.renew_node("a", "i1", lease_seconds=LEASE, lead=True)
    assert renewed.leader_epoch == first  # the same term
    held = await backdoor.row(store, "leadership", name="fleet")
    assert (held["node"], held["expires_at"]) == ("a", renewed.at + LEASE)

    await backdoor.update(store, "leadership", {"name": "fleet"}, expires_at=await store.db_now() - 1)
    taken = (await store.renew_node("b", "i1", lease_seconds=LEASE, lead=True)).leader_epoch
    assert taken is not None and taken > first
    assert (await store.renew_node("a", "i1", lease_seconds=LEASE, lead=True)).leader_epoch is None
    assert [n.name for n in await store.list_nodes(DEAD) if n.leader] == ["b"]

    await store.stop_node("b", "i1")  # a clean stop lets it go at once
    back = (await store.renew_node("a", "i1", lease_seconds=LEASE, lead=True)).leader_epoch
    assert back is not None and back > taken
    leaders = [e["data"] for e in await store.recent_events() if e["kind"] == "node.leader"]
    assert sorted(d["epoch"] for d in leaders) == [first, taken, back]


async def test_a_node_restarted_under_its_name_leads_in_a_new_term(store: Store) -> None:
    """The stalled incarnation may still hold leader work fenced by the old epoch: it must not pass."""
    first = await up(store, "a", lead="a")
    assert first is not None
    await age(store, "a", DEAD + 1)
    assert await store.register_node(spec("a", "i2"), dead_after=DEAD, lease_seconds=LEASE) is not None
    again = (await store.renew_node("a", "i2", lease_seconds=LEASE, lead=True)).leader_epoch
    assert again is not None and again > first
    assert await store.move_accounts(first, None, "a", 10, ["a"]) == 0  # the old term's work is refused


# --- acquisition and release ----------------------------------------------------------------------------------------

async def test_acquisition_takes_only_accounts_assigned_here_each_with_its_epoch_one_higher(store: Store) -> None:
    await seed(store, 5)
    epoch = await up(store, "a", "b", lead="a")
    assert epoch is not None
    assert await store.acquire_accounts("a", "i1", 10) == []  # nothing assigned yet
    assert await store.move_accounts(epoch, None, "a", 3, ["a", "b"]) == 3
    touched: list[set[int]] = []

    async def hook(tx: object) -> None:
        touched.append(set(tx.accounts))  # type: ignore[attr-defined]

    store.on_commit = hook
    first = await store.acquire_accounts("a", "i1", 2)
    assert first == [OwnedAccount(1, 1, "a", False), OwnedAccount(2, 1, "a", False)]
    assert touched == [{1, 2}]  # the stream hears of the new owner
    assert [a.id for a in await store.acquire_accounts("a", "i1", 10)] == [3]  # not 1 and 2 again
    assert await store.acquire_accounts("a", "i1", 10) == []
    assert await store.acquire_accounts("b", "i1", 10) == []  # assigned to a, not to b
    assert await store.acquire_accounts("a", "i9", 10) == []  # not the incarnation holding the name
    await store.disable_account(2, "banned")
    assert await store.owned_accounts("a") == [OwnedAccount(1, 1, "a", False), OwnedAccount(2, 1, "a", True),
                                               OwnedAccount(3, 1, "a", False)]
    assert (await owners(store))[4] == (None, 0)


async def test_an_account_moves_only_once_its_owner_released_it_and_a_stale_release_does_nothing(
        store: Store) -> None:
    await seed(store, 2)
    epoch = await up(store, "a", "b", lead="a")
    assert epoch is not None
    await own(store, "a", [1, 2])
    assert await store.move_accounts(epoch, "a", "b", 1, ["a", "b"]) == 1
    assert [(o.id, o.assigned) for o in await store.owned_accounts("a")] == [(1, "b"), (2, "a")]
    assert await store.acquire_accounts("b", "i1", 10) == []  # a's lease still runs
    assert await store.release_accounts("b", [(1, 1)]) == 0  # not b's to release
    assert await store.release_accounts("a", [(1, 7)]) == 0  # not under that epoch
    assert await store.release_accounts("a", [(1, 1)]) == 1
    assert await store.acquire_accounts("b", "i1", 10) == [OwnedAccount(1, 2, "b", False)]
    assert await store.release_accounts("a", [(1, 1)]) == 0  # late: b owns it now
    assert await owners(store) == {1: ("b", 2), 2: ("a", 1)}
    assert (await store.get_account(1))["owner"] == "b"


async def test_a_dead_nodes_accounts_are_taken_once_its_lease_ended(store: Store) -> None:
    await seed(store, 3)
    epoch = await up(store, "a", "b", lead="b")
    assert epoch is not None
    await own(store, "a", [1, 2, 3])
    await age(store, "a", DEAD + 1)  # dead, but the lease renewed at its last heartbeat has not ended
    assert (await store.assignment(["b"])).orphans == 3
    assert await store.move_accounts(epoch, None, "b", 10, ["b"]) == 3  # a dead node's go at once
    assert await store.acquire_accounts("b", "i1", 10) == []
    await lapse(store, "a")
    assert [(o.id, o.epoch) for o in await store.acquire_accounts("b", "i1", 10)] == [(1, 2), (2, 2), (3, 2)]


async def test_a_new_owner_sends_running_setup_tasks_back_to_retry_and_ends_local_leases(
        store: Store) -> None:
    await seed(store, 2)
    epoch = await up(store, "a", "b", lead="b")
    assert epoch is not None
    await own(store, "a", [1, 2])
    await store.dispatch_setup({"update_name": {"first_name": "Ann"}})
    claimed = await store.claim_setup(["update_name"], 10, LOCK)
    assert sorted(c.account_id for c in claimed) == [1, 2]
    at = await store.db_now()
    leased = {}
    for account_id, executor in ((1, "local"), (1, "acme"), (2, "local")):
        leased[(account_id, executor)] = await backdoor.insert(
            store, "tasks", subject_type="quota", subject_id=1, account_id=account_id, action="view_post",
            target="@news", post_id=7, status="leased", lease_token=f"tok-{account_id}-{executor}",
            leased_by=executor, lease_expires_at=at + 300, lease_count=1, created_at=at)
    await lapse(store, "a")
    await store.pin_accounts([1], "b")  # only account 1 moves
    assert [o.id for o in await store.acquire_accounts("b", "i1", 10)] == [1]

    task_1 = next(c for c in claimed if c.account_id == 1)
    row = await backdoor.row(store, "account_tasks", id=task_1.id)
    assert row["status"] == "retry" and row["retry_at"] is not None
    assert await backdoor.maybe_row(store, "account_locks", account_id=1) is None  # setup:ID released
    assert (await backdoor.row(store, "account_locks", account_id=2))["holder"] == f"setup:{claimed[1].id}"
    [recovered] = [e for e in await store.recent_events() if e["kind"] == "setup.recovered"]
    assert (recovered["account_id"], recovered["task_id"]) == (1, task_1.id)
    local = await backdoor.row(store, "tasks", id=leased[(1, "local")])
    assert local["status"] == "leased" and local["lease_expires_at"] <= await store.db_now()  # ended now
    provider = await backdoor.row(store, "tasks", id=leased[(1, "acme")])  # a provider's lease stays its own
    assert (provider["status"], provider["lease_token"]) == ("leased", "tok-1-acme")
    other = await backdoor.row(store, "tasks", id=leased[(2, "local")])  # not acquired: untouched
    assert (other["status"], other["lease_token"]) == ("leased", "tok-2-local")
    assert (await backdoor.row(store, "account_tasks", id=claimed[1].id))["status"] == "running"
    reaped = await store.reap_leases(3, 60.0)  # the reaper hands it out again, its reservation renewed
    assert reaped.returned == 1
    local = await backdoor.row(store, "tasks", id=leased[(1, "local")])
    assert (local["status"], local["lease_token"], local["leased_by"]) == ("pending", None, None)
    assert local["lease_expires_at"] > await store.db_now() + 30


# SQLite takes a name over at once: test_sqlite_takes_a_name_over_at_once
@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
async def test_a_restarted_incarnation_waits_for_its_predecessors_lease_then_takes_its_accounts(store: Store) -> None:
    await seed(store, 2)
    epoch = await up(store, "a", lead="a")
    assert epoch is not None
    await own(store, "a", [1, 2])
    await store.dispatch_setup({"update_name": {"first_name": "Ann"}})
    assert len(await store.claim_setup(["update_name"], 10, LOCK)) == 2
    await age(store, "a", DEAD + 1)  # dead (kill -9, or stalled), its lease still running
    assert await store.register_node(spec("a", "i2"), dead_after=DEAD, lease_seconds=LEASE) is not None
    assert await store.owned_accounts("a") == []  # they are the old incarnation's, not this one's
    assert await store.acquire_accounts("a", "i2", 10) == []
    assert [n.accounts for n in await store.list_nodes(DEAD)] == [2]
    await backdoor.update(store, "nodes", {"name": "a"}, prior_until=await store.db_now() - 1)  # that lease ended
    taken = await store.acquire_accounts("a", "i2", 10)
    assert [(o.id, o.epoch) for o in taken] == [(1, 2), (2, 2)]
    assert [t["status"] for t in await backdoor.rows(store, "account_tasks")] == ["retry", "retry"]
    assert await store.owned_accounts("a") == taken
    assert await store.acquire_accounts("a", "i2", 10) == []


# SQLite takes a name over at once: test_sqlite_takes_a_name_over_at_once
@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
async def test_a_stop_before_the_predecessors_lease_ended_leaves_its_accounts_owned_until_then(store: Store) -> None:
    await seed(store, 2)
    await up(store, "a", "b")
    await own(store, "a", [1, 2])
    await age(store, "a", DEAD + 1)
    assert await store.register_node(spec("a", "i2"), dead_after=DEAD, lease_seconds=LEASE) is not None
    assert await store.stop_node("a", "i2") == 0  # they were never this incarnation's to let go
    await store.pin_accounts([1, 2], "b")
    assert await store.acquire_accounts("b", "i1", 10) == []  # the stalled incarnation may still hold them
    assert await store.register_node(spec("a", "i3"), dead_after=DEAD, lease_seconds=LEASE) is not None
    assert await store.acquire_accounts("a", "i3", 10) == []  # nor may a third: it waits, as the second did
    await store.stop_node("a", "i3")
    await backdoor.update(store, "nodes", {"name": "a"}, owned_until=await store.db_now() - 1)
    assert [(o.id, o.epoch) for o in await store.acquire_accounts("b", "i1", 10)] == [(1, 2), (2, 2)]


async def test_a_clean_stop_releases_every_account_and_the_leadership(store: Store) -> None:
    await seed(store, 3)
    epoch = await up(store, "a", "b", lead="a")
    assert epoch is not None
    await own(store, "a", [1, 2])
    assert await store.stop_node("a", "i9") == 0  # not its incarnation: nothing
    assert await store.stop_node("a", "i1") == 2
    assert await owners(store) == {1: (None, 1), 2: (None, 1), 3: (None, 0)}  # epochs kept
    assert (await store.get_account(1))["owner"] is None
    assert await store.stop_node("a", "i1") == 0
    [a] = [n for n in await store.list_nodes(DEAD) if n.name == "a"]
    assert (a.alive, a.leader, a.accounts) == (False, False, 0) and a.stopped_at is not None
    assert (await store.renew_node("b", "i1", lease_seconds=LEASE, lead=True)).leader_epoch == epoch + 1
    await store.pin_accounts([1], "b")
    assert await store.acquire_accounts("b", "i1", 10) == [OwnedAccount(1, 2, "b", False)]  # no lease to wait for


# --- the balancer's counts and moves, pins ---------------------------------------------------------------------------

async def test_assignment_counts_each_live_nodes_accounts_pins_and_orphans(store: Store) -> None:
    await seed(store, 7)
    epoch = await up(store, "a", "b", "c", lead="a")
    assert epoch is not None
    await store.pin_accounts([1], "a")
    await store.pin_accounts([2], "gone")  # a node not running: the pin waits for it
    assert await store.move_accounts(epoch, None, "b", 2, ["a", "b", "c"]) == 2  # 3 and 4
    assert await store.move_accounts(epoch, None, "c", 1, ["a", "b", "c"]) == 1  # 5
    got = await store.assignment(["a", "b", "c"])
    assert (got.assigned, got.pinned, got.orphans, got.pinned_away) == (
        {"a": 1, "b": 2, "c": 1}, {"a": 1, "b": 0, "c": 0}, 2, 1)
    dead_c = await store.assignment(["a", "b"])  # c's account counts as an orphan once c is not live
    assert (dead_c.assigned, dead_c.orphans) == ({"a": 1, "b": 2}, 3)


async def test_move_accounts_moves_up_to_n_never_a_pinned_one_and_only_under_the_current_term(store: Store) -> None:
    await seed(store, 6)
    epoch = await up(store, "a", "b", lead="a")
    assert epoch is not None
    assert await store.move_accounts(epoch, None, "a", 100, ["a", "b"]) == 6
    await store.pin_accounts([1, 2], "a")
    assert await store.move_accounts(epoch, "a", "b", 3, ["a", "b"]) == 3
    assert await store.move_accounts(epoch, "a", "b", 0, ["a", "b"]) == 0
    assert await store.move_accounts(epoch, "a", "a", 5, ["a", "b"]) == 0
    assert await store.move_accounts(epoch, "a", "b", 10, ["a", "b"]) == 1  # 1 and 2 are pinned there
    assigned = {r["id"]: r["assigned_node"] for r in await backdoor.rows(store, "accounts")}
    assert assigned == {1: "a", 2: "a", 3: "b", 4: "b", 5: "b", 6: "b"}
    moved = [e["data"] for e in await store.recent_events() if e["kind"] == "accounts.moved"]
    assert sorted(d["accounts"] for d in moved) == [1, 3, 6]

    assert await store.move_accounts(epoch + 1, "b", "a", 10, ["a", "b"]) == 0  # not the term there is
    await backdoor.update(store, "leadership", {"name": "fleet"}, expires_at=await store.db_now() - 1)
    assert await store.move_accounts(epoch, "b", "a", 10, ["a", "b"]) == 0  # the term has ended
    taken = (await store.renew_node("b", "i1", lease_seconds=LEASE, lead=True)).leader_epoch
    assert taken is not None and await store.move_accounts(epoch, "b", "a", 10, ["a", "b"]) == 0
    assert await store.move_accounts(taken, "b", "a", 1, ["a", "b"]) == 1


async def test_pin_sets_the_node_and_unpin_leaves_the_assignment(store: Store) -> None:
    await seed(store, 3)
    await up(store, "a", "b")
    assert await store.pin_accounts([1, 2], "b") == 2
    assert await store.pin_accounts([1, 2], "b") == 0
    view = await store.get_account(1)
    assert (view["pinned_node"], view["owner"]) == ("b", None)
    with pytest.raises(NotFound, match="account 9"):
        await store.pin_accounts([3, 9], "a")
    assert (await store.get_account(3))["pinned_node"] is None  # nothing half-done
    assert await store.pin_accounts([1, 3], None) == 1  # 3 was not pinned
    rows = {r["id"]: (r["pinned_node"], r["assigned_node"]) for r in await backdoor.rows(store, "accounts")}
    assert rows == {1: (None, "b"), 2: ("b", "b"), 3: (None, None)}
    pins = [e["data"] for e in await store.recent_events() if e["kind"] == "accounts.pinned"]
    assert sorted(json.dumps(d, sort_keys=True) for d in pins) == [
        '{"accounts": 1, "node": null}', '{"accounts": 2, "node": "b"}']


async def test_the_account_view_shows_the_owner_in_every_listing(store: Store) -> None:
    await seed(store, 2)
    epoch = await up(store, "a", lead="a")
    assert epoch is not None
    await own(store, "a", [2])
    listed, _ = await store.list_accounts()
    assert [(a["id"], a["owner"], a["pinned_node"]) for a in listed] == [(1, None, None), (2, "a", None)]
    assert [a["owner"] for a in await store.accounts_by_id(None, [2])] == ["a"]
    assert (await store.get_account(2))["owner"] == "a"


# --- several stores on one database ----------------------------------------------------------------------------------

async def test_nodes_on_two_stores_acquiring_while_accounts_move_never_both_own_one(
        store: Store, database: Database) -> None:
    """Two stores (on PostgreSQL: two daemons' connections) acquire concurrently while the leader keeps moving
    accounts between them and each releases what is no longer assigned to it, as the runtime does. What each
    believes it owns never overlaps, and always matches the rows."""
    ids = await seed(store, 60)
    rng = random.Random(12)
    async with database.opened() as other:
        epoch = await up(store, "b", lead="b")
        assert epoch is not None and await other.register_node(spec("c"), dead_after=DEAD, lease_seconds=LEASE)
        await store.move_accounts(epoch, None, "b", 30, ["b", "c"])
        await store.move_accounts(epoch, None, "c", 30, ["b", "c"])
        sides = {"b": store, "c": other}
        believed: dict[str, dict[int, int]] = {"b": {}, "c": {}}

        async def acquire(name: str) -> None:
            for o in await sides[name].acquire_accounts(name, "i1", 1000):
                assert o.id not in believed["b"] and o.id not in believed["c"], (name, o)
                believed[name][o.id] = o.epoch

        async def release(name: str) -> None:
            mine = believed[name]
            gone = [(o.id, o.epoch) for o in await sides[name].owned_accounts(name) if o.assigned != name]
            assert await sides[name].release_accounts(name, gone) == len(gone)
            for account_id, _ in gone:
                del mine[account_id]

        for _ in range(25):
            src, dst = rng.choice([("b", "c"), ("c", "b")])
            await asyncio.gather(acquire("b"), acquire("c"), store.move_accounts(epoch, src, dst, rng.randint(1, 20),
                                                                                 ["b", "c"]))
            await asyncio.gather(release("b"), release("c"))
            rows = await owners(store)
            for name in ("b", "c"):
                assert {i: rows[i] for i in believed[name]} == {i: (name, e) for i, e in believed[name].items()}
        await asyncio.gather(acquire("b"), acquire("c"))
        assert len(believed["b"]) + len(believed["c"]) == len(ids)  # in the end each has all its own


async def test_two_stores_acquiring_one_dead_nodes_accounts_at_once_take_each_once(
        store: Store, database: Database) -> None:
    """The race acquisition exists for: the same accounts, free for the taking, asked for by two
    transactions at once (one node; on PostgreSQL two connections), each account given once."""
    await seed(store, 200)
    epoch = await up(store, "a", "b", lead="b")
    assert epoch is not None
    await own(store, "a", list(range(1, 201)))
    await lapse(store, "a")
    await store.move_accounts(epoch, None, "b", 200, ["b"])
    async with database.opened() as other:
        results = await asyncio.gather(*(s.acquire_accounts("b", "i1", 70) for s in (store, other, store, other)))
    taken = [o.id for batch in results for o in batch]
    assert sorted(taken) == list(range(1, 201))  # every one, none twice
    assert {e for _, e in (await owners(store)).values()} == {2}


# one writer: SQLite has no concurrent transactions to wait for
@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
async def test_a_non_leaders_renewal_does_not_wait_for_the_leaders_row(store: Store, database: Database) -> None:
    """Another node's renewal in flight holds the leadership row and its own node row; this one's completes."""
    await up(store, "a", "b", lead="a")
    assert database.url is not None
    conn = await asyncpg.connect(database.url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT * FROM leadership FOR UPDATE")
            await conn.execute("SELECT * FROM nodes WHERE name = 'a' FOR UPDATE")
            renewal = await asyncio.wait_for(store.renew_node("b", "i1", lease_seconds=LEASE, lead=True), 30)
    finally:
        await conn.close()
    assert renewal.held and renewal.leader_epoch is None


# one writer: SQLite has no concurrent transactions to deadlock
@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
async def test_an_acquisition_that_postgresql_rolls_back_to_break_a_deadlock_runs_again(
        store: Store, database: Database) -> None:
    """Another node holds a local task of account 1 (and the task counters its UPDATE moves), then waits for
    the account row this acquisition has locked: PostgreSQL breaks the cycle by rolling the acquisition back (it waited first, so its deadlock check
    runs first), and the store runs it again instead of handing the caller DeadlockDetectedError."""
    await seed(store, 1)
    await up(store, "a", "b", lead="b")
    await own(store, "a", [1])
    at = await store.db_now()
    task = await backdoor.insert(store, "tasks", subject_type="quota", subject_id=1, account_id=1,
                                 action="post_stats", target="@news", post_id=7, status="leased", lease_token="t",
                                 leased_by="local", lease_expires_at=at + 300, lease_count=1, created_at=at)
    await lapse(store, "a")
    await store.pin_accounts([1], "b")
    assert database.url is not None
    other = await asyncpg.connect(database.url)
    try:
        await other.execute("SET deadlock_timeout = '30s'")  # this side never breaks the cycle itself
        tx = other.transaction()
        await tx.start()
        await other.execute("UPDATE tasks SET lease_count = lease_count WHERE id = $1", task)
        acquiring = asyncio.create_task(store.acquire_accounts("b", "i1", 10))
        for _ in range(200):  # until the acquisition waits on a row the other node holds (it has account 1 then)
            waiting = await other.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                           " AND datname = current_database()")
            if waiting:
                break
            await asyncio.sleep(0.05)
        assert waiting, "the acquisition never waited on the other node"
        closing = asyncio.create_task(other.execute("UPDATE accounts SET label = label WHERE id = 1"))
        for _ in range(300):  # the acquisition is rolled back (deadlock), which lets this UPDATE through
            if closing.done():
                break
            await asyncio.sleep(0.05)
        assert closing.done(), "the other node's UPDATE never got the account row"
        await closing
        await tx.commit()
        acquired = await asyncio.wait_for(acquiring, 30)
    finally:
        await other.close()
    if not acquired:  # run again while the other node still held the account: the next acquisition takes it
        acquired = await store.acquire_accounts("b", "i1", 10)
    assert [a.id for a in acquired] == [1]
    assert (await owners(store))[1][0] == "b"


# one process writes SQLite: no other node can hold its log
@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
async def test_a_renewal_counts_its_fence_from_after_the_wait_for_the_stores_writer(
        store: Store, database: Database) -> None:
    """Another node stopped while holding the log's lock keeps this node's event-writing transaction waiting,
    and with it the writer a renewal needs. The renewal's ``sent`` (which the node's fence counts from) is
    taken once the writer is this renewal's, so that wait does not eat into the lease: after the lock was let
    go, not before the renewal was asked for."""
    await seed(store, 1)
    await up(store, "a")
    assert database.url is not None
    other = await asyncpg.connect(database.url)
    try:
        tx = other.transaction()
        await tx.start()
        await other.execute(f"SELECT pg_advisory_xact_lock({LOG_LOCK})")

        async def write_an_event() -> None:
            async with store.tx() as t:
                await t.event("test.waits", "behind the other node's log lock")

        writing = asyncio.create_task(write_an_event())
        await asyncio.sleep(0.2)
        asked = steady()
        renewing = asyncio.create_task(store.renew_node("a", "i1", lease_seconds=LEASE, lead=False))
        await asyncio.sleep(0.5)
        assert not writing.done() and not renewing.done()  # both wait: the event for the lock, the renewal for it
        released = steady()
        await tx.commit()
        renewal = await asyncio.wait_for(renewing, 30)
        await asyncio.wait_for(writing, 30)
    finally:
        await other.close()
    assert renewal.held and asked < released <= renewal.sent


async def test_the_digest_of_what_a_node_owns_is_the_lists_and_changes_with_each_thing_a_heartbeat_acts_on(
        store: Store) -> None:
    """A heartbeat skips reading the whole list while the digest is the one of the list it applied last:
    the database's digest must be exactly that list's, and change when any account is taken, disabled,
    assigned elsewhere or released."""
    await seed(store, 3)
    epoch = await up(store, "a", "b", lead="a")
    assert epoch is not None
    seen: list[tuple[int, int]] = []

    async def digest_agrees() -> None:
        digest = await store.owned_digest("a")
        assert digest == owned_digest(await store.owned_accounts("a"), "a")
        assert digest not in seen  # every step below changes something a heartbeat must act on
        seen.append(digest)

    await digest_agrees()
    assert seen == [(0, 0)]
    await own(store, "a", [1, 2, 3])
    await digest_agrees()
    await store.disable_account(2, "banned")
    await digest_agrees()
    assert await store.move_accounts(epoch, "a", "b", 1, ["a", "b"]) == 1  # account 1: assigned to b
    await digest_agrees()
    assert await store.release_accounts("a", [(1, 1)]) == 1
    await digest_agrees()
    assert (await store.owned_digest("a"))[0] == 2
