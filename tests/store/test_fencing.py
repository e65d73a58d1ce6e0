"""Fencing by ownership epoch (design 9), on both drivers: every write a node makes for an account it owns
carries the epoch it owns it under, and a write under an epoch that is no longer the account's changes
nothing at all. The epochs and owners are written by hand (tests/store/backdoor.py), as another node's
acquisition would leave them; the operations under test are the store's own.

The last tests are PostgreSQL's alone: there another process can move an epoch while a statement runs, and
the fence must wait for it (FOR SHARE) rather than write under the epoch its snapshot saw."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Collection
from typing import Any, TypeVar

import asyncpg

from store import backdoor
from store.test_batches import generation
from store.world import world
from tgdaemon.quotas.leases import utc_day
from tgdaemon.store import (
    AccountEffect,
    Finish,
    Generated,
    LeaseAsk,
    SessionData,
    SetupOutcome,
    Store,
    Tx,
)
from tgdaemon.store.postgres import PostgresStore

T = TypeVar("T")
LOCK = 600.0
PLAIN = AccountEffect(ok=True)
COOLDOWN = AccountEffect(cooldown_until=time.time() + 3600, cooldown_reason="FLOOD_WAIT", error_code="FLOOD_WAIT_60",
                         name=("New", "Name"))


async def seed(store: Store, owners: dict[int, tuple[str | None, int]], *, probes: Collection[int] = ()) -> None:
    """Accounts 1..n, account i owned by ``owners[i]`` = (node, epoch)."""
    async with store.tx() as tx:
        await store.insert_accounts(tx, [{"phone": f"+1555222{i:04d}", "tg_user_id": 900 + i, "label": f"f{i}",
                                          "is_probe": int(i in probes), "profile_json": "{}"} for i in owners])
    for i, (node, epoch) in owners.items():
        await own(store, i, node, epoch)


async def own(store: Store, account_id: int, node: str | None, epoch: int) -> None:
    """What an acquisition by ``node`` leaves on the account (its tasks are the caller's business)."""
    await backdoor.update(store, "accounts", {"id": account_id}, owner=node, owner_epoch=epoch)


async def log_since(store: Store, after: int) -> list[dict[str, Any]]:
    return await store.events_after(after, 1000)


def names(events: list[dict[str, Any]], account_id: int) -> bool:
    """Whether any of these log rows names the account (an event of its own, or a ``changes`` row)."""
    return any(e["account_id"] == account_id or account_id in e["data"].get("accounts", []) for e in events)


def hooked(store: Store) -> list[set[int]]:
    touched: list[set[int]] = []

    async def hook(tx: Tx) -> None:
        touched.append(set(tx.accounts))

    store.on_commit = hook
    return touched


# --- setup tasks -----------------------------------------------------------------------------------------------

async def test_claim_with_an_owner_takes_only_its_accounts_tasks_with_their_epochs(store: Store) -> None:
    await seed(store, {1: ("n1", 3), 2: ("n1", 5), 3: ("n2", 2), 4: (None, 7)})
    await store.dispatch_setup({"update_name": {}})
    mine = await store.claim_setup(["update_name"], 10, LOCK, owner="n1")
    assert sorted((t.account_id, t.epoch) for t in mine) == [(1, 3), (2, 5)]
    assert [(t.account_id, t.epoch) for t in await store.claim_setup(["update_name"], 10, LOCK, owner="n3")] == []
    theirs = await store.claim_setup(["update_name"], 10, LOCK, owner="n2")
    assert [(t.account_id, t.epoch) for t in theirs] == [(3, 2)]
    # No owner: every account's (as with one daemon before nodes), the epoch still read.
    assert [(t.account_id, t.epoch) for t in await store.claim_setup(["update_name"], 10, LOCK)] == [(4, 7)]
    assert [r["status"] for r in await backdoor.rows(store, "account_tasks", order="account_id")] == ["running"] * 4


async def test_a_setup_finish_under_a_stale_epoch_changes_nothing_and_a_current_one_applies(store: Store) -> None:
    """Both kinds of batch: the common one (plain successes, one statement on PostgreSQL) and one with an
    effect (applied before the statement). The stale task keeps its state, its lock and its account as the
    new owner left them; no event, no change in the log or the commit hook names its account."""
    await seed(store, {1: ("n1", 1), 2: ("n1", 1), 3: ("n1", 1), 4: ("n1", 1)})
    await store.dispatch_setup({"update_name": {}})
    claimed = {t.account_id: t for t in await store.claim_setup(["update_name"], 10, LOCK, owner="n1")}
    assert {t.epoch for t in claimed.values()} == {1}
    await own(store, 1, "n2", 2)  # taken over while the tasks ran (their rows left as they were)
    await own(store, 3, "n2", 2)
    stale_before = {a: await backdoor.row(store, "accounts", id=a) for a in (1, 3)}
    head = await store.last_event_id()
    touched = hooked(store)

    await store.finish_setup_many([(claimed[1], SetupOutcome("done", PLAIN)), (claimed[2], SetupOutcome("done", PLAIN))])
    await store.finish_setup_many([(claimed[3], SetupOutcome("retry", COOLDOWN, error="wait", retry_at=time.time())),
                                   (claimed[4], SetupOutcome("retry", COOLDOWN, error="wait", retry_at=time.time()))])

    for stale in (1, 3):
        task = await backdoor.row(store, "account_tasks", account_id=stale)
        assert (task["status"], task["attempts"], task["last_error"]) == ("running", 1, None)
        lock = await backdoor.row(store, "account_locks", account_id=stale)
        assert lock["holder"] == claimed[stale].holder
        assert await backdoor.row(store, "accounts", id=stale) == stale_before[stale]
    log = await log_since(store, head)
    assert not names(log, 1) and not names(log, 3)
    assert all(1 not in t and 3 not in t for t in touched)
    # The current ones applied, each as it would without fencing.
    assert (await backdoor.row(store, "account_tasks", account_id=2))["status"] == "done"
    four = await backdoor.row(store, "account_tasks", account_id=4)
    assert (four["status"], four["attempts"], four["last_error"]) == ("retry", 1, "wait")
    assert await backdoor.rows(store, "account_locks") == [await backdoor.row(store, "account_locks", account_id=1),
                                                           await backdoor.row(store, "account_locks", account_id=3)]
    acc4 = await backdoor.row(store, "accounts", id=4)
    assert (acc4["cooldown_reason"], acc4["first_name"]) == ("FLOOD_WAIT", "New")
    kinds = sorted((e["account_id"], e["kind"]) for e in log if e["kind"] != "changes")
    assert kinds == [(2, "setup.done"), (4, "account.cooldown"), (4, "setup.retry")]


async def test_a_batch_of_only_stale_setup_finishes_writes_nothing(store: Store) -> None:
    await seed(store, {1: ("n1", 4)})
    await store.dispatch_setup({"update_name": {}})
    [task] = await store.claim_setup(["update_name"], 1, LOCK, owner="n1")
    await own(store, 1, "n2", 5)
    head = await store.last_event_id()
    for effect in (PLAIN, COOLDOWN):
        await store.finish_setup(task, SetupOutcome("failed", effect, error="gone"))
    assert await log_since(store, head) == []
    assert (await backdoor.row(store, "account_tasks", id=task.id))["status"] == "running"
    assert (await backdoor.row(store, "accounts", id=1))["cooldown_reason"] is None


async def test_recover_setup_with_an_owner_recovers_only_its_accounts_tasks(store: Store) -> None:
    await seed(store, {1: ("n1", 1), 2: ("n2", 1), 3: (None, 1)})
    await store.dispatch_setup({"update_name": {}})
    claimed = {t.account_id: t for t in await store.claim_setup(["update_name"], 10, LOCK)}
    assert await store.recover_setup(owner="n1") == 1
    assert [(r["account_id"], r["status"]) for r in await backdoor.rows(store, "account_tasks", order="account_id")
            ] == [(1, "retry"), (2, "running"), (3, "running")]
    assert sorted(r["account_id"] for r in await backdoor.rows(store, "account_locks")) == [2, 3]
    [event] = [e for e in await store.events_after(0, 100) if e["kind"] == "setup.recovered"]
    assert (event["account_id"], event["task_id"]) == (1, claimed[1].id)
    assert await store.recover_setup(owner="n1") == 0
    assert await store.recover_setup() == 2  # no owner: every running task, as at a lone daemon's start


# --- account writes ----------------------------------------------------------------------------------------------

async def test_save_session_is_refused_under_a_stale_epoch(store: Store) -> None:
    await seed(store, {1: ("n1", 3)})
    first = SessionData(2, "149.154.167.41", 443, os.urandom(256))
    assert await store.save_session(1, first) is True  # unfenced
    head = await store.last_event_id()
    assert await store.save_session(1, SessionData(4, "149.154.167.91", 443, os.urandom(256)), epoch=2) is False
    assert await store.load_session(1) == first
    await own(store, 1, "n2", 4)
    assert await store.save_session(1, SessionData(5, "91.108.56.1", 443, os.urandom(256)), epoch=3) is False
    assert await store.load_session(1) == first
    moved = SessionData(4, "149.154.167.91", 443, os.urandom(256))
    assert await store.save_session(1, moved, epoch=4) is True
    assert await store.load_session(1) == moved
    await seed_more(store, 2)  # an account with no session yet: the fenced write inserts it
    assert await store.save_session(2, first, epoch=0) is True and await store.load_session(2) == first
    assert await store.save_session(2, moved, epoch=1) is False and await store.load_session(2) == first
    assert not names(await log_since(store, head), 1)


async def seed_more(store: Store, account_id: int) -> None:
    async with store.tx() as tx:
        await store.insert_accounts(tx, [{"phone": f"+1555333{account_id:04d}", "tg_user_id": 1900 + account_id,
                                          "label": f"g{account_id}", "is_probe": 0, "profile_json": "{}"}])
    assert (await store.get_account(account_id))["id"] == account_id


async def test_apply_account_effect_is_refused_under_a_stale_epoch(store: Store) -> None:
    await seed(store, {1: ("n1", 6), 2: ("n1", 6)})
    before = await backdoor.row(store, "accounts", id=1)
    head = await store.last_event_id()
    touched = hooked(store)
    disable = AccountEffect(disable_reason="banned", error_code="USER_DEACTIVATED_BAN")
    async with store.tx() as tx:
        assert await store.apply_account_effect(tx, 1, COOLDOWN, epoch=5) is False
        assert await store.apply_account_effect(tx, 1, disable, epoch=7) is False
        assert await store.apply_account_effect(tx, 2, COOLDOWN, epoch=6) is True
    assert await backdoor.row(store, "accounts", id=1) == before
    assert not names(await log_since(store, head), 1) and all(1 not in t for t in touched)
    assert (await store.get_account(2))["cooldown_reason"] == "FLOOD_WAIT"
    async with store.tx() as tx:  # unfenced: as every caller before nodes
        assert await store.apply_account_effect(tx, 1, disable) is True
    assert (await store.get_account(1))["disabled_reason"] == "banned"


async def test_probe_accounts_with_an_owner_are_only_its_own_each_with_its_epoch(store: Store) -> None:
    await seed(store, {1: ("n1", 2), 2: ("n2", 8), 3: (None, 0), 4: ("n1", 1)}, probes={1, 2, 3})
    assert [(p.id, p.epoch) for p in await store.probe_accounts(owner="n1")] == [(1, 2)]  # 4 is no probe
    assert [(p.id, p.epoch) for p in await store.probe_accounts(owner="n2")] == [(2, 8)]
    assert [(p.id, p.epoch) for p in await store.probe_accounts(owner="n9")] == []
    assert [(p.id, p.epoch) for p in await store.probe_accounts()] == [(1, 2), (2, 8), (3, 0)]


# --- pulled tasks ------------------------------------------------------------------------------------------------

async def test_local_leases_of_an_owner_carry_the_epoch_and_a_stale_report_is_a_stale_lease(store: Store) -> None:
    w = await world(store, workers=4)
    epochs = {a: 10 + a for a in w.workers}
    for a in w.workers:
        await own(store, a, "n1" if a != w.workers[-1] else "n2", epochs[a])
    qids = [await w.add_quota(quantity=10) for _ in w.workers]
    assert (await w.tick()).tasks == 4
    [leased] = await store.lease_tasks([LeaseAsk("local", 10, 60, 90, owner="n1")])
    assert sorted((t["account_id"], t["epoch"]) for t in leased) == [(a, epochs[a]) for a in w.workers[:-1]]
    [other] = await store.lease_tasks([LeaseAsk("local", 10, 60, 90, owner="n2")])
    assert [(t["account_id"], t["epoch"]) for t in other] == [(w.workers[-1], epochs[w.workers[-1]])]

    by_account = {t["account_id"]: t for t in leased}
    ok_stale, failed_stale, current = (by_account[a] for a in w.workers[:3])
    for t in (ok_stale, failed_stale):  # taken over by n2 since (its task rows left as they were)
        await own(store, t["account_id"], "n2", epochs[t["account_id"]] + 1)
    unfenced = other[0]
    await own(store, unfenced["account_id"], "n3", epochs[unfenced["account_id"]] + 1)
    quotas_before = {q: await w.quota(q) for q in qids}
    head = await store.last_event_id()
    outcomes = await store.finish_tasks([
        Finish("local", ok_stale["id"], ok_stale["lease_token"], ok=True, observation={"views": 3},
               epoch=ok_stale["epoch"]),
        Finish("local", failed_stale["id"], failed_stale["lease_token"], ok=False, error_code="FLOOD_WAIT_60",
               error="wait", effect=COOLDOWN, epoch=failed_stale["epoch"]),
        Finish("local", current["id"], current["lease_token"], ok=True, observation={"views": 4},
               epoch=current["epoch"]),
        # No epoch (a provider's report): its lease token is its fence, not the ownership.
        Finish("local", unfenced["id"], unfenced["lease_token"], ok=True, observation={"views": 5}),
    ], pace_seconds=30, day=utc_day(), retry_seconds=600)
    assert outcomes == ["stale_lease", "stale_lease", "applied", "applied"]

    for t in (ok_stale, failed_stale):
        row = await w.task(t["id"])
        assert (row["status"], row["lease_token"], row["reported_at"]) == ("leased", t["lease_token"], None)
        lock = await w.lock(t["account_id"])
        assert lock is not None and lock["holder"] == f"quota:{t['id']}"
        account = await w.account(t["account_id"])
        assert (account["cooldown_reason"], account["last_error_code"], account["first_name"]) == (None, None, "")
        assert quotas_before[t["subject_id"]] == await w.quota(t["subject_id"])  # counters unchanged
    assert {r["task_id"] for r in await backdoor.rows(store, "measurements")} == {current["id"], unfenced["id"]}
    assert sorted(r["account_id"] for r in await backdoor.rows(store, "usage")) == sorted(
        [current["account_id"], unfenced["account_id"]])
    log = await log_since(store, head)
    assert not names(log, ok_stale["account_id"]) and not names(log, failed_stale["account_id"])
    assert (await w.quota(current["subject_id"]))["quantity_left"] == 9
    # The same stale report again is still a stale lease; with the right epoch the lease applies.
    again = Finish("local", ok_stale["id"], ok_stale["lease_token"], ok=True, epoch=ok_stale["epoch"])
    assert await store.finish_tasks([again], pace_seconds=0, day=utc_day(), retry_seconds=600) == ["stale_lease"]
    fresh = Finish("local", ok_stale["id"], ok_stale["lease_token"], ok=True, epoch=ok_stale["epoch"] + 1)
    assert await store.finish_tasks([fresh], pace_seconds=0, day=utc_day(), retry_seconds=600) == ["applied"]


async def test_generation_under_a_leader_epoch_that_is_not_current_makes_nothing(store: Store) -> None:
    w = await world(store, workers=4)
    qids = [await w.add_quota() for _ in range(2)]
    untouched = [await w.quota(q) for q in qids]
    assert await store.generate(generation(leader_epoch=1)) == Generated()  # no leadership row at all
    await backdoor.insert(store, "leadership", name="fleet", node="n1", epoch=5, expires_at=time.time() + 60)
    head = await store.last_event_id()
    assert await store.generate(generation(leader_epoch=4)) == Generated()  # an earlier holder's epoch
    await backdoor.update(store, "leadership", {"name": "fleet"}, expires_at=time.time() - 1)
    assert await store.generate(generation(leader_epoch=5)) == Generated()  # this one's, but run out
    assert await w.tasks() == [] and await log_since(store, head) == []
    assert [await w.quota(q) for q in qids] == untouched  # no cursor, no next run, no error moved
    await backdoor.update(store, "leadership", {"name": "fleet"}, expires_at=time.time() + 60)
    assert (await store.generate(generation(leader_epoch=5))).tasks == 2
    await w.due(*qids)
    assert (await store.generate(generation())).tasks == 2  # no epoch: unfenced, as a lone daemon generates


# --- PostgreSQL: a fence waits for another node's acquisition in flight --------------------------------------------

class Acquisition:
    """Another node's acquisition of account ``account_id``, held open on a connection of its own: the epoch
    moved, its running setup tasks back to retry and their locks let go, not committed yet."""

    def __init__(self, url: str, account_id: int) -> None:
        self.url = url
        self.account_id = account_id

    async def __aenter__(self) -> Acquisition:
        self.conn = await asyncpg.connect(self.url)
        self.watch = await asyncpg.connect(self.url)
        self.tr = self.conn.transaction()
        self.committed = False
        await self.tr.start()
        await self.conn.execute("UPDATE accounts SET owner = 'n2', owner_epoch = owner_epoch + 1 WHERE id = $1",
                                self.account_id)
        await self.conn.execute("DELETE FROM account_locks WHERE account_id = $1 AND holder IN (SELECT 'setup:' || id"
                                " FROM account_tasks WHERE account_id = $1 AND status = 'running')", self.account_id)
        await self.conn.execute("UPDATE account_tasks SET status = 'retry', retry_at = 0 WHERE account_id = $1"
                                " AND status = 'running'", self.account_id)
        return self

    async def blocks(self, aw: Awaitable[T]) -> T:
        """Start ``aw``; once the store's writer waits for this acquisition's row lock, commit; ``aw``'s result."""
        job = asyncio.ensure_future(aw)
        for _ in range(400):  # bounded: 20 s
            waiting = await self.watch.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = 'tgdaemon' AND wait_event_type = 'Lock'")
            if waiting or job.done():
                break
            await asyncio.sleep(0.05)
        assert not job.done(), "the store's write did not wait for the acquisition in flight"
        assert waiting == 1
        await self.tr.commit()
        self.committed = True
        return await asyncio.wait_for(job, 20)

    async def __aexit__(self, *exc: object) -> None:
        if not self.committed:  # a failed test: let the rows go
            await self.tr.rollback()
        await self.conn.close()
        await self.watch.close()


async def pg_seed(url: str) -> PostgresStore:
    store = await PostgresStore.open(url)
    async with store.tx() as tx:
        await store.insert_accounts(tx, [{"phone": "+15554440001", "tg_user_id": 4401, "label": "p1", "is_probe": 0,
                                          "profile_json": json.dumps({})}])
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("UPDATE accounts SET owner = 'n1', owner_epoch = 1 WHERE id = 1")
    finally:
        await conn.close()
    await store.dispatch_setup({"update_name": {}})
    return store


async def test_pg_a_setup_finish_waits_for_an_acquisition_in_flight_then_changes_nothing(
        empty_pg_database: str) -> None:
    store = await pg_seed(empty_pg_database)
    try:
        [task] = await store.claim_setup(["update_name"], 1, LOCK, owner="n1")
        head = await store.last_event_id()
        ok_before = await store.read_val("SELECT last_ok_at FROM accounts WHERE id = 1")
        async with Acquisition(empty_pg_database, 1) as acquisition:
            await acquisition.blocks(store.finish_setup(task, SetupOutcome("done", PLAIN)))
        row = await store.read_row("SELECT status, attempts FROM account_tasks WHERE id = $1", task.id)
        assert row is not None and (row["status"], row["attempts"]) == ("retry", 1)  # as the new owner left it
        assert await store.events_after(head, 100) == []  # no setup.done, no changes row
        assert await store.read_val("SELECT last_ok_at FROM accounts WHERE id = 1") == ok_before
    finally:
        await store.close()


async def test_pg_a_setup_claim_waits_for_an_acquisition_in_flight_then_claims_nothing(
        empty_pg_database: str) -> None:
    """Without the fence the task would be claimed under the old epoch after the new owner had looked for
    running tasks to put back: running for good, its finish refused."""
    store = await pg_seed(empty_pg_database)
    try:
        async with Acquisition(empty_pg_database, 1) as acquisition:
            assert await acquisition.blocks(store.claim_setup(["update_name"], 1, LOCK, owner="n1")) == []
        row = await store.read_row("SELECT status, attempts FROM account_tasks WHERE account_id = 1")
        assert row is not None and (row["status"], row["attempts"]) == ("pending", 0)
        assert await store.read_val("SELECT count(*) FROM account_locks") == 0
        [claimed] = await store.claim_setup(["update_name"], 1, LOCK, owner="n2")
        assert claimed.epoch == 2
    finally:
        await store.close()


async def test_pg_a_session_write_waits_for_an_acquisition_in_flight_then_is_refused(empty_pg_database: str) -> None:
    store = await pg_seed(empty_pg_database)
    try:
        first = SessionData(2, "149.154.167.41", 443, os.urandom(256))
        assert await store.save_session(1, first, epoch=1)
        async with Acquisition(empty_pg_database, 1) as acquisition:
            moved = SessionData(4, "149.154.167.91", 443, os.urandom(256))
            assert await acquisition.blocks(store.save_session(1, moved, epoch=1)) is False
        assert await store.load_session(1) == first
    finally:
        await store.close()
