"""The setup pipeline's store operations on both drivers (design 4): dispatch, eligibility, claims with the
account lock, finishing with what an outcome does to the account, recovery after a crash, the operator's
retry, and the listing ``blocked_by`` is computed from. The scheduler that drives them is tested end to end
in tests/test_setup.py."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from store import backdoor
from store.world import SLACK, close_to
from tgdaemon.errors import NotFound
from tgdaemon.store import AccountEffect, ClaimedTask, SetupOutcome, Store
from tgdaemon.store.rules import DISPATCH_ROWS

TYPES = {"ensure_2fa": {"enable": False}, "update_name": {"first_name": "Ann"}}
LOCK = 600.0
PLAIN = AccountEffect(ok=True)


async def seed(store: Store, n: int = 4, *, probe: int | None = None) -> list[int]:
    """``n`` accounts (ids 1..n), account ``probe`` a probe; each with a profile override."""
    async with store.tx() as tx:
        await store.insert_accounts(tx, [{"phone": f"+1555000{i:04d}", "tg_user_id": 500 + i, "label": f"a{i}",
                                          "is_probe": int(i == probe), "profile_json": json.dumps({"n": i})}
                                         for i in range(1, n + 1)])
    return list(range(1, n + 1))


async def tasks(store: Store, **where: Any) -> list[dict[str, Any]]:
    return await backdoor.rows(store, "account_tasks", **where)


async def test_dispatch_creates_the_required_tasks_once_for_accounts_that_should_converge(store: Store) -> None:
    await seed(store, 5, probe=5)
    await store.disable_account(3, "gone")
    await backdoor.update(store, "accounts", {"id": 4}, is_active=0)
    assert await store.dispatch_setup(TYPES) == (4, 4)  # accounts 1 and 2: enabled, active, not probes
    rows = await tasks(store)
    assert sorted((r["account_id"], r["task_type"]) for r in rows) == [
        (1, "ensure_2fa"), (1, "update_name"), (2, "ensure_2fa"), (2, "update_name")]
    assert all((r["status"], r["attempts"], r["retry_at"]) == ("pending", 0, None) for r in rows)
    assert {r["task_type"]: json.loads(r["payload_json"]) for r in rows} == TYPES
    assert await store.dispatch_setup(TYPES) == (0, 4)  # the unique key makes it idempotent
    [event] = [e for e in await store.recent_events() if e["kind"] == "setup.dispatched"]
    assert event["data"] == {"created": 4}

    async with store.tx() as tx:
        assert await store.take_lock(tx, 1, "quota:9", LOCK)
    assert await store.dispatch_setup(TYPES) == (0, 2)  # due: not the locked account's
    await store.enable_account(3)  # account 3 gets all three, 1 and 2 the new one; account 1's wait for its lock
    assert await store.dispatch_setup({**TYPES, "privacy_phone_hidden": {}}) == (5, 6)


async def test_dispatch_tells_the_commit_hook_which_accounts_got_tasks(store: Store) -> None:
    await seed(store, 3, probe=3)
    touched: list[set[int]] = []

    async def hook(tx: Any) -> None:
        touched.append(set(tx.accounts))

    store.on_commit = hook
    await store.dispatch_setup(TYPES)
    await store.dispatch_setup(TYPES)  # created nothing: no account changed
    assert touched == [{1, 2}]


async def test_a_large_dispatch_is_bounded_transactions_that_let_another_writer_in(store: Store) -> None:
    """The writer is never held for a whole fleet's dispatch: each transaction creates at most DISPATCH_ROWS
    tasks (every task of an account in the same one), and a writer waiting meanwhile gets in between."""
    per_tx = DISPATCH_ROWS // len(TYPES)
    n = 2 * per_tx + 10  # three transactions
    await seed(store, n)
    commits: list[tuple[str, set[int], list[dict[str, Any]]]] = []
    waiting: list[asyncio.Task[None]] = []

    async def lock_one() -> None:
        async with store.tx() as tx:
            assert await store.take_lock(tx, n, "quota:9", LOCK)

    async def hook(tx: Any) -> None:
        commits.append(("other" if tx.accounts == {n} else "dispatch", set(tx.accounts), list(tx.events)))
        if not waiting:  # another writer asks for the writer while the first transaction still holds it
            waiting.append(asyncio.create_task(lock_one()))
            await asyncio.sleep(0)

    store.on_commit = hook
    assert await store.dispatch_setup(TYPES) == (2 * n, 2 * n - 2)  # account n's wait for its lock
    await waiting[0]
    assert [kind for kind, _, _ in commits] == ["dispatch", "other", "dispatch", "dispatch"]
    batches = [accounts for kind, accounts, _ in commits if kind == "dispatch"]
    assert [len(b) for b in batches] == [per_tx, per_tx, 10]
    assert set().union(*batches) == set(range(1, n + 1))
    rows = await tasks(store)
    assert len(rows) == 2 * n
    per_account = {}
    for r in rows:
        per_account.setdefault(r["account_id"], set()).add(r["task_type"])
    assert all(types == set(TYPES) for types in per_account.values())
    # ids: transaction by transaction, type by type within one, accounts by id (claims break ties by id)
    order = [(r["task_type"], r["account_id"]) for r in sorted(rows, key=lambda r: r["id"])]
    expected = [(t, a) for batch in batches for t in TYPES for a in sorted(batch)]
    assert order == expected
    dispatched = [e for _, _, events in commits for e in events if e["kind"] == "setup.dispatched"]
    assert [e["data"] for e in dispatched] == [{"created": 2 * n}]
    assert dispatched[0] in commits[-1][2]  # the total, in the last transaction
    commits.clear()
    assert await store.dispatch_setup(TYPES) == (0, 2 * n - 2)
    assert commits == []  # nothing to create: not one write


async def test_claim_takes_one_eligible_task_per_account_with_its_lock(store: Store) -> None:
    await seed(store, 3)
    await store.dispatch_setup(TYPES)
    claimed = await store.claim_setup(list(TYPES), 10, LOCK)
    assert sorted(t.account_id for t in claimed) == [1, 2, 3]  # one each, though each has two due
    for t in claimed:
        assert (t.attempts, t.resumed, t.result) == (1, False, {})
        assert t.payload == TYPES[t.task_type] and t.profile == {"n": t.account_id}
        assert (t.tg_user_id, t.phone) == (500 + t.account_id, f"+1555000{t.account_id:04d}")
        assert close_to(t.started_at, time.time())
        lock = await backdoor.row(store, "account_locks", account_id=t.account_id)
        assert lock["holder"] == t.holder == f"setup:{t.id}" and close_to(lock["expires_at"], time.time() + LOCK)
        row = await backdoor.row(store, "account_tasks", id=t.id)
        assert (row["status"], row["attempts"]) == ("running", 1)
    started = [e for e in await store.events_after(0, 100) if e["kind"] == "setup.started"]
    assert sorted(e["task_id"] for e in started) == sorted(t.id for t in claimed)
    assert await store.claim_setup(list(TYPES), 10, LOCK) == []  # every account is busy now
    assert (await store.account_counts())["busy"] == 3


async def test_claim_honours_the_limit_the_types_and_the_order(store: Store) -> None:
    await seed(store, 4)
    await store.dispatch_setup(TYPES)
    [only] = await store.claim_setup(["update_name"], 1, LOCK)
    assert only.task_type == "update_name" and only.account_id == 1  # never tried, lowest id first
    await backdoor.update(store, "account_tasks", {"account_id": 2}, status="retry", retry_at=time.time() - 50)
    await backdoor.update(store, "account_tasks", {"account_id": 4}, status="retry", retry_at=time.time() - 100)
    got = await store.claim_setup(["ensure_2fa"], 3, LOCK)
    assert [t.account_id for t in got] == [3, 4, 2]  # never tried first, then the longest due


@pytest.mark.parametrize(("change", "claimable"), [
    ({}, True),
    ({"task": {"status": "retry", "retry_at": 600.0}}, False),  # times: seconds from now
    ({"task": {"status": "retry", "retry_at": -1.0}}, True),
    ({"task": {"status": "done"}}, False),
    ({"task": {"status": "failed"}}, False),
    ({"task": {"status": "running"}}, False),
    ({"account": {"cooldown_until": 600.0}}, False),
    ({"account": {"cooldown_until": -1.0}}, True),
    ({"account": {"is_active": 0}}, False),
    ({"account": {"is_probe": 1}}, False),
    ({"account": {"disabled_at": -1.0}}, False),
    ({"lock": 600.0}, False),
    ({"lock": -1.0}, True),  # an expired lock is free
], ids=repr)
async def test_eligibility(store: Store, change: dict[str, Any], claimable: bool) -> None:
    """Design 4: not done or failed, not running, retry due, account not cooling down nor disabled, lock free."""
    await seed(store, 1)
    await store.dispatch_setup({"update_name": {}})
    times = ("retry_at", "cooldown_until", "disabled_at")

    def resolved(values: dict[str, Any]) -> dict[str, Any]:
        return {k: time.time() + v if k in times else v for k, v in values.items()}

    await backdoor.update(store, "account_tasks", {}, **resolved(change.get("task", {})))
    await backdoor.update(store, "accounts", {}, **resolved(change.get("account", {})))
    if "lock" in change:
        async with store.tx() as tx:
            assert await store.take_lock(tx, 1, "quota:1", change["lock"])
    assert (await store.dispatch_setup({}))[1] == int(claimable)  # "due now" counts by the same rules
    assert len(await store.claim_setup(["update_name"], 10, LOCK)) == int(claimable)


async def claim_one(store: Store) -> ClaimedTask:
    [task] = await store.claim_setup(["update_name"], 1, LOCK)
    return task


async def test_finish_records_each_outcome_applies_it_and_releases_the_lock(store: Store) -> None:
    await seed(store, 3)
    await store.dispatch_setup({"update_name": {}})
    claimed = await store.claim_setup(["update_name"], 3, LOCK)
    done, retry, failed = sorted(claimed, key=lambda t: t.account_id)
    retry_at = time.time() + 300
    await store.finish_setup_many([
        (done, SetupOutcome("done", PLAIN, result={"meta": {"skipped": True}})),
        (retry, SetupOutcome("retry", AccountEffect(cooldown_until=time.time() + 120, cooldown_reason="FLOOD_WAIT",
                                                    error_code="FLOOD_WAIT"),
                             error="wait 120 s", retry_at=retry_at, refund_attempt=True)),
        (failed, SetupOutcome("failed", AccountEffect(disable_reason="AUTH_KEY_UNREGISTERED",
                                                      error_code="AUTH_KEY_UNREGISTERED"), error="dead")),
    ])
    rows = {r["account_id"]: r for r in await tasks(store)}
    assert (rows[1]["status"], rows[1]["attempts"], json.loads(rows[1]["result_json"])) == (
        "done", 1, {"meta": {"skipped": True}})
    assert (rows[2]["status"], rows[2]["attempts"], rows[2]["last_error_code"], rows[2]["last_error"]) == (
        "retry", 0, "FLOOD_WAIT", "wait 120 s")  # a wait is not the task's fault: its attempt is given back
    assert abs(rows[2]["retry_at"] - retry_at) < 1e-3
    assert (rows[3]["status"], rows[3]["last_error_code"]) == ("failed", "AUTH_KEY_UNREGISTERED")
    assert await backdoor.rows(store, "account_locks") == []
    one, two, three = [await store.get_account(i) for i in (1, 2, 3)]
    assert one["last_ok_at"] is not None and one["last_error_code"] is None and one["state"] == "ready"
    assert (two["state"], two["cooldown_reason"], two["last_error_code"]) == ("cooldown", "FLOOD_WAIT", "FLOOD_WAIT")
    assert (three["state"], three["disabled_reason"]) == ("disabled", "AUTH_KEY_UNREGISTERED")
    ends = {e["account_id"]: e for e in await store.events_after(0, 100) if e["kind"].startswith("setup.")
            and e["kind"] not in ("setup.started", "setup.dispatched")}
    assert {a: e["kind"] for a, e in ends.items()} == {1: "setup.done", 2: "setup.retry", 3: "setup.failed"}
    assert ends[1]["message"] == "update_name: done (skipped)"
    assert ends[2]["data"]["error_code"] == "FLOOD_WAIT" and ends[2]["data"]["retry_at"] == pytest.approx(retry_at)
    kinds = [e["kind"] for e in await store.recent_events(account_id=3)]
    assert "account.disabled" in kinds


async def test_finish_and_claim_refills_in_the_same_transaction_group_by_group(store: Store) -> None:
    """The finished tasks' accounts are free to the claims after them in the transaction; each (types, limit)
    claims as claim_setup would after the one before it (never an account twice); ends come before starts."""
    await seed(store, 3)
    await store.dispatch_setup(TYPES)
    first = await store.claim_setup(["ensure_2fa"], 2, LOCK)  # accounts 1 and 2 busy
    commits: list[list[str]] = []

    async def hook(tx: Any) -> None:
        commits.append([e["kind"] for e in tx.events])

    store.on_commit = hook
    names, twofa = await store.finish_and_claim_setup(
        [(t, SetupOutcome("done", PLAIN)) for t in first], [(["update_name"], 2), (["ensure_2fa"], 5)], LOCK)
    assert sorted(t.account_id for t in names) == [1, 2]  # freed by the finish, in the same transaction
    assert [t.account_id for t in twofa] == [3]  # 1 and 2 are taken now; 3's ensure_2fa is the one left
    assert commits == [["setup.done", "setup.done", "setup.started", "setup.started", "setup.started"]]
    rows = {(r["account_id"], r["task_type"]): r["status"] for r in await tasks(store)}
    assert rows == {(1, "ensure_2fa"): "done", (2, "ensure_2fa"): "done", (1, "update_name"): "running",
                    (2, "update_name"): "running", (3, "ensure_2fa"): "running", (3, "update_name"): "pending"}
    assert {r["account_id"]: r["holder"] for r in await backdoor.rows(store, "account_locks")} == {
        t.account_id: t.holder for t in names + twofa}
    assert await store.finish_and_claim_setup([], [(list(TYPES), 0), (["update_name"], 3)], LOCK) == [[], []]


async def test_a_resumed_task_keeps_its_start_and_what_the_earlier_attempt_recorded(store: Store) -> None:
    await seed(store, 1)
    await store.dispatch_setup({"update_name": {}})
    first = await claim_one(store)
    await store.finish_setup(first, SetupOutcome("retry", AccountEffect(error_code="RPC_CALL_FAIL"),
                                                 result={"photo_id": 77}, retry_at=time.time() - 1))
    again = await claim_one(store)
    assert (again.id, again.attempts, again.resumed, again.result) == (first.id, 2, True, {"photo_id": 77})
    assert abs(again.started_at - first.started_at) < 1e-3
    await store.finish_setup(again, SetupOutcome("done", PLAIN, result={"story_id": 5}))
    assert json.loads((await backdoor.row(store, "account_tasks", id=first.id))["result_json"]) == {
        "photo_id": 77, "story_id": 5}


async def test_a_finish_for_a_task_that_is_no_longer_running_changes_it_not(store: Store) -> None:
    await seed(store, 1)
    await store.dispatch_setup({"update_name": {}})
    task = await claim_one(store)
    assert await store.recover_setup() == 1  # a restart took it back meanwhile
    await store.finish_setup(task, SetupOutcome("done", PLAIN))
    assert (await backdoor.row(store, "account_tasks", id=task.id))["status"] == "retry"


async def test_recover_returns_running_tasks_to_retry_and_lets_their_locks_go(store: Store) -> None:
    await seed(store, 3)
    await store.dispatch_setup({"update_name": {}})
    claimed = await store.claim_setup(["update_name"], 2, LOCK)
    assert await store.recover_setup() == 2
    for t in claimed:
        row = await backdoor.row(store, "account_tasks", id=t.id)
        assert row["status"] == "retry" and close_to(row["retry_at"], time.time())
    assert await backdoor.rows(store, "account_locks") == []
    recovered = [e for e in await store.events_after(0, 100) if e["kind"] == "setup.recovered"]
    assert sorted(e["task_id"] for e in recovered) == sorted(t.id for t in claimed)
    assert await store.recover_setup() == 0
    assert len(await store.claim_setup(["update_name"], 10, LOCK)) == 3


async def test_the_operators_retry_makes_failed_and_waiting_tasks_due_with_fresh_attempts(store: Store) -> None:
    await seed(store, 2)
    await store.dispatch_setup({**TYPES, "privacy_phone_hidden": {}})
    await backdoor.update(store, "account_tasks", {"account_id": 1, "task_type": "ensure_2fa"}, status="failed",
                          attempts=4)
    await backdoor.update(store, "account_tasks", {"account_id": 1, "task_type": "update_name"}, status="retry",
                          attempts=2, retry_at=time.time() + 3600)
    await backdoor.update(store, "account_tasks", {"account_id": 1, "task_type": "privacy_phone_hidden"},
                          status="done", attempts=1)
    async with store.tx() as tx:
        await store.apply_account_effect(tx, 1, AccountEffect(cooldown_until=time.time() + 600,
                                                              cooldown_reason="FLOOD_WAIT"))
    assert await store.retry_account_setup(1) == 2
    rows = {r["task_type"]: r for r in await tasks(store, account_id=1)}
    for task_type in TYPES:
        assert (rows[task_type]["status"], rows[task_type]["attempts"], rows[task_type]["retry_at"]) == (
            "retry", 0, None)
    assert (rows["privacy_phone_hidden"]["status"], rows["privacy_phone_hidden"]["attempts"]) == ("done", 1)
    assert (await store.get_account(1))["state"] == "cooldown"  # cooldowns stay
    [event] = [e for e in await store.recent_events(account_id=1) if e["kind"] == "setup.retry_requested"]
    assert event["data"] == {"tasks": 2}
    assert await store.retry_account_setup(2) == 0
    with pytest.raises(NotFound):
        await store.retry_account_setup(99)


async def test_the_listing_shows_each_task_with_its_account_and_live_lock(store: Store) -> None:
    await seed(store, 3, probe=3)
    await store.dispatch_setup(TYPES)
    await store.disable_account(2, "gone")
    async with store.tx() as tx:
        assert await store.take_lock(tx, 1, "quota:42", LOCK)
    listed = await store.setup_tasks()
    assert [(t["account_id"], t["task_type"]) for t in listed] == [
        (1, "ensure_2fa"), (1, "update_name"), (2, "ensure_2fa"), (2, "update_name")]
    one = listed[0]
    assert (one["label"], one["lock_holder"], one["status"], one["attempts"]) == ("a1", "quota:42", "pending", 0)
    assert listed[2]["disabled_at"] is not None and listed[2]["lock_holder"] is None
    assert [t["account_id"] for t in await store.setup_tasks(account_id=2)] == [2, 2]
    await backdoor.update(store, "account_tasks", {"account_id": 2, "task_type": "update_name"}, status="failed")
    assert [(t["account_id"], t["task_type"]) for t in await store.setup_tasks(status="failed")] == [
        (2, "update_name")]
    assert len(await store.setup_tasks(limit=3)) == 3
    async with store.tx() as tx:
        assert await store.take_lock(tx, 2, "quota:43", -1)  # expired: no holder shown
    assert (await store.setup_tasks(account_id=2))[0]["lock_holder"] is None


async def test_tasks_finished_since_counts_setup_and_pulled_tasks(store: Store) -> None:
    await seed(store, 2)
    await store.dispatch_setup({"update_name": {}})
    before = time.time() - SLACK
    for task in await store.claim_setup(["update_name"], 2, LOCK):
        await store.finish_setup(task, SetupOutcome("done" if task.account_id == 1 else "failed", PLAIN))
    await backdoor.insert(store, "tasks", subject_type="quota", subject_id=1, account_id=1, action="channel_stats",
                          target="@x", status="done", created_at=time.time(), reported_at=time.time())
    assert await store.tasks_finished_since(before) == 3
    assert await store.tasks_finished_since(time.time() + SLACK) == 0
