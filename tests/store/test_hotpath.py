"""The pull and report path as a whole transaction (issue 13): on both drivers, a failure anywhere in a pull or a
report, half-way through its statements or as its log rows are written, leaves nothing of it behind, and the
next try applies; a batch of successes and failures is one commit.

SQLite runs a pull and a report whole on its writer's thread, in one hand-off (``Store.write``); the tests
marked so check that machinery itself: where the body runs, that it is one hand-off, that a body which raises
leaves nothing and the store goes on writing.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from store import backdoor
from store.world import World, world
from tgdaemon.quotas.messages import Done, Failed, Observation
from tgdaemon.store import Store, Tx
from tgdaemon.store.sqlite import SQLiteStore
from tgdaemon.store.sqlite.core import Tx as SQLiteTx


async def leased_world(store: Store) -> tuple[World, list[Any]]:
    """Two workers, two quotas with 5 orders left each, a task of each (on each worker), both leased."""
    w = await world(store, workers=2)
    await w.add_quota(orders=5)
    await w.add_quota(orders=5)
    assert (await w.tick()).tasks == 2
    tasks = await w.pull()
    assert len(tasks) == 2
    return w, tasks


async def state(w: World) -> dict[str, Any]:
    """Everything a report changes, as stored."""
    return {table: await backdoor.rows(w.store, table)
            for table in ("tasks", "account_locks", "quotas", "usage", "measurements", "events")}


def done(task: Any, views: int = 10) -> Done:
    return Done(task_id=task.task_id, lease_token=task.lease_token, result=Observation(views=views))


@pytest.mark.parametrize("broken", ["measurements", "log"])
async def test_a_report_that_fails_half_way_leaves_nothing_and_the_next_try_applies(store: Store,
                                                                                    broken: str) -> None:
    """The measurement insert (the last statement of the successes) or the log rows at COMMIT fail: the tasks
    stay leased with their reservations, no counter moved, no row written; reported again, both apply."""
    w, tasks = await leased_world(store)
    before = await state(w)
    failing = backdoor.inserts_fail(store, "measurements") if broken == "measurements" else \
        backdoor.log_writes_fail(store, "changes")
    async with failing:
        with pytest.raises(backdoor.INJECTED_ERRORS):
            await w.leases.report("local", [done(t) for t in tasks])
    assert await state(w) == before
    assert [r.outcome for r in await w.leases.report("local", [done(t) for t in tasks])] == ["applied"] * 2
    assert [t["status"] for t in await w.tasks()] == ["done", "done"]
    assert await backdoor.count(store, "account_locks") == 0
    assert [q["orders_left"] for q in await backdoor.rows(store, "quotas")] == [4, 4]


async def test_a_pull_that_fails_half_way_leases_nothing_and_the_next_pull_does(store: Store) -> None:
    """Renewing the reservations (an upsert into account_locks, after the tasks were marked leased) fails:
    the tasks stay pending with no token and their reservations as they were; the next pull leases them."""
    w = await world(store, workers=2)
    await w.add_quota(orders=5)
    await w.add_quota(orders=5)
    assert (await w.tick()).tasks == 2
    before = await state(w)
    async with backdoor.inserts_fail(store, "account_locks"):
        with pytest.raises(backdoor.INJECTED_ERRORS):
            await w.pull()
    assert await state(w) == before
    assert all(t["status"] == "pending" and t["lease_token"] is None for t in await w.tasks())
    assert len(await w.pull()) == 2


async def test_a_batch_of_successes_and_failures_is_one_commit(store: Store) -> None:
    """One report done, one failed with a flood wait: both applied, in one transaction (one commit hook), which
    names both accounts (one's reservation let go, the other's cooldown), both quotas and the failure's events."""
    w, [a, b] = await leased_world(store)
    commits: list[Tx] = []

    async def hook(tx: Tx) -> None:
        commits.append(tx)

    store.on_commit = hook
    results = await w.leases.report("local", [done(a), Failed(task_id=b.task_id, lease_token=b.lease_token,
                                                               error_code="FLOOD_WAIT_60")])
    assert [r.outcome for r in results] == ["applied", "applied"]
    assert len(commits) == 1
    assert commits[0].accounts == {a.account_id, b.account_id} and commits[0].quotas == {a.subject_id, b.subject_id}
    assert [e["kind"] for e in commits[0].events] == ["account.cooldown", "task.failed", "changes"]
    assert (await w.task(b.task_id))["status"] == "failed" and (await w.account(b.account_id))["cooldown_until"]
    assert (await w.task(a.task_id))["status"] == "done"


# --- SQLite: a transaction whole on the writer's thread -------------------------------------------------------------

@pytest.fixture
async def sqlite_store(tmp_path: Path) -> Any:
    store = await SQLiteStore.open(tmp_path / "db.sqlite3")
    try:
        yield store
    finally:
        await store.close()


async def test_a_whole_transaction_is_one_hand_off_to_the_writers_thread(sqlite_store: SQLiteStore) -> None:
    """The body runs on the writer connection's own thread (not the event loop's), and BEGIN, its statements,
    its log row and COMMIT take one hand-off there: aiosqlite's queue sees one call."""
    writer = sqlite_store._writer
    calls = 0
    queue = writer._execute

    async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await queue(fn, *args, **kwargs)

    seen: list[int] = []

    def body(tx: SQLiteTx, conn: Any) -> str:
        seen.append(threading.get_ident())
        conn.execute("INSERT INTO meta (key, value) VALUES ('test.a', '1')")
        conn.execute("INSERT INTO meta (key, value) VALUES ('test.b', '2')")
        tx.add_event("test.wrote", "two keys")
        return "ok"

    writer._execute = counted  # type: ignore[method-assign]  # a spy: every call still goes to aiosqlite's queue
    try:
        assert await sqlite_store.write(body) == "ok"
    finally:
        del writer._execute
    assert calls == 1
    assert seen == [writer._thread.ident] and seen[0] != threading.get_ident()
    assert await sqlite_store.get_meta("test.a") == "1" and await sqlite_store.get_meta("test.b") == "2"
    assert [r[0] for r in await sqlite_store.read("SELECT kind FROM events")] == ["test.wrote"]


async def test_a_body_that_raises_leaves_nothing_and_the_store_writes_on(sqlite_store: SQLiteStore) -> None:
    """A statement written, then the body raises: the caller gets that error, the statement is rolled back,
    no event is written, the commit hook is not called, and the next transaction commits."""
    hooked: list[Tx] = []

    async def hook(tx: Tx) -> None:
        hooked.append(tx)

    sqlite_store.on_commit = hook

    def body(tx: SQLiteTx, conn: Any) -> None:
        conn.execute("INSERT INTO meta (key, value) VALUES ('test.half', 'written')")
        tx.add_event("test.half", "half")
        raise LookupError("half-way")

    with pytest.raises(LookupError, match="half-way"):
        await sqlite_store.write(body)
    assert await sqlite_store.get_meta("test.half") is None
    assert list(await sqlite_store.read("SELECT id FROM events")) == []
    assert hooked == []

    def after(tx: SQLiteTx, conn: Any) -> None:
        conn.execute("INSERT INTO meta (key, value) VALUES ('test.after', 'yes')")
        tx.add_event("test.after", "after")

    await sqlite_store.write(after)
    assert await sqlite_store.get_meta("test.after") == "yes"
    assert [[e["kind"] for e in tx.events] for tx in hooked] == [["test.after"]]


async def test_what_a_report_stores_is_the_same_on_both_drivers(store: Store) -> None:
    """A success stores its observation as the task's result and a measurement with the counts and, of the rest,
    only the title and the reactions by emoji; a failure stores its error (none when it has no text)."""
    w, [a, b] = await leased_world(store)
    seen = Observation(views=7, forwards=1, reactions=3, reactions_by_emoji={"👍": 2, "🔥": 1}, title="News")
    results = await w.leases.report("local", [
        Done(task_id=a.task_id, lease_token=a.lease_token, result=seen),
        Failed(task_id=b.task_id, lease_token=b.lease_token, error_code="CHANNEL_PRIVATE", error="")])
    assert [r.outcome for r in results] == ["applied", "applied"]
    observed = {"views": 7, "forwards": 1, "reactions": 3, "reactions_by_emoji": {"👍": 2, "🔥": 1}, "title": "News"}
    assert json.loads((await w.task(a.task_id))["result_json"]) == observed
    assert json.loads((await w.task(b.task_id))["result_json"]) == {}
    [m] = await backdoor.rows(store, "measurements")
    assert (m["task_id"], m["views"], m["forwards"], m["replies"], m["reactions"], m["subscribers"]) == (
        a.task_id, 7, 1, None, 3, None)
    assert json.loads(m["data_json"]) == {"reactions_by_emoji": {"👍": 2, "🔥": 1}, "title": "News"}


async def test_a_failure_with_an_error_text_stores_it(store: Store) -> None:
    w, [a, _] = await leased_world(store)
    [result] = await w.leases.report("local", [Failed(task_id=a.task_id, lease_token=a.lease_token,
                                                      error_code="CHANNEL_PRIVATE", error="no access")])
    assert result.outcome == "applied"
    assert json.loads((await w.task(a.task_id))["result_json"]) == {"error": "no access"}
