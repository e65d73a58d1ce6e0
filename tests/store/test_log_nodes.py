"""The event log shared by several daemons (design 9, "Stream across nodes"): ids in commit order across
stores on one PostgreSQL database, the lock that orders them taken before any id, and ``listen``, which
tells a store of every commit to the log, its own and the others', and catches up after its connection
was lost. ``listen`` on SQLite (one writer) is there and tells nothing. The stream's Hub finds a commit
nothing announced by its own poll of the log's head."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from store.conftest import Database, PgServer, _create, _drop
from tgdaemon.store import Store
from tgdaemon.store.postgres import PostgresStore, listener
from tgdaemon.store.postgres.core import LOG_LOCK
from tgdaemon.stream import Hub, Position

WAIT = 10.0  # seconds any one awaited thing may take


@pytest.fixture
async def pg_url(pg_server: PgServer, pg_template: str) -> AsyncIterator[str]:
    """One migrated database for several stores, as several daemons share one."""
    name = await _create(pg_server, pg_template)
    try:
        yield pg_server.url(name)
    finally:
        await _drop(pg_server, name)


@contextlib.asynccontextmanager
async def stores(url: str, n: int) -> AsyncIterator[list[PostgresStore]]:
    opened = [await PostgresStore.open(url) for _ in range(n)]
    try:
        yield opened
    finally:
        for store in opened:
            await store.close()


async def seed(store: Store, n: int) -> None:
    async with store.tx() as tx:
        await store.insert_accounts(tx, ({"phone": f"+1555{i:07d}", "tg_user_id": 1000 + i, "label": f"a{i}",
                                          "is_probe": 0, "profile_json": "{}"} for i in range(1, n + 1)))


async def until(check: Callable[[], bool], what: str) -> None:
    """Bounded in count and in time."""
    for _ in range(int(WAIT / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within {WAIT:.0f} s: {what}")


async def test_a_follower_of_the_log_never_finds_a_row_below_its_cursor(pg_url: str) -> None:
    """Two stores (two daemons) commit at once, each transaction writing events early in its body and
    touching an account late, with awaits in between; a follower reading ``events_after(cursor)`` with the
    cursor at the highest id it has seen sees every row: none commits later with a smaller id."""
    async with stores(pg_url, 2) as (a, b):
        await seed(a, 20)
        head = await a.last_event_id()
        rng = random.Random(12)
        done = asyncio.Event()
        committed: list[list[int]] = []

        async def write(store: PostgresStore, writer: int) -> None:
            for i in range(40):
                async with store.tx() as tx:
                    await tx.event("test.node", f"writer {writer} commit {i}", account_id=rng.randint(1, 20))
                    await asyncio.sleep(rng.random() / 500)
                    await tx.events_many([{"kind": "test.more", "message": str(i)}] * rng.randint(0, 3))
                    await asyncio.sleep(rng.random() / 500)
                    tx.touch(rng.randint(1, 20))
                committed.append([e["id"] for e in tx.events])

        seen: list[int] = []

        async def follow() -> None:
            cursor = head
            for _ in range(100_000):
                last_round = done.is_set()
                rows = await a.events_after(cursor, 1000)
                seen.extend(r["id"] for r in rows)
                cursor = rows[-1]["id"] if rows else cursor
                if last_round and not rows:
                    return
                await asyncio.sleep(0)
            raise AssertionError("the follower never caught up")

        follower = asyncio.create_task(follow())
        await asyncio.wait_for(asyncio.gather(*(write(s, w) for w, s in enumerate((a, b, a, b)))), 60)
        done.set()
        await asyncio.wait_for(follower, WAIT)
        logged = [r["id"] for r in await a.events_after(head, 100_000)]

    assert len(committed) == 160
    assert all(ids == list(range(ids[0], ids[0] + len(ids))) for ids in committed), "one commit's rows are adjacent"
    assert logged == sorted(i for ids in committed for i in ids) == list(range(head + 1, head + 1 + len(logged)))
    assert seen == logged, "the follower saw every row, in id order, none appearing below its cursor later"


async def test_the_log_lock_is_taken_before_a_transaction_takes_an_id(pg_url: str) -> None:
    """While another transaction holds the log's lock (another daemon between its log rows and its COMMIT),
    a commit waits for it without having taken an id, and takes the next one once it is let go."""
    async with stores(pg_url, 1) as (store,):
        await seed(store, 2)
        other = await asyncpg.connect(pg_url)
        try:
            await other.execute("BEGIN")
            await other.execute("SELECT pg_advisory_xact_lock($1)", LOG_LOCK)
            before = await other.fetchval("SELECT last_value FROM events_id_seq")

            async def commit() -> list[int]:
                async with store.tx() as tx:
                    await tx.event("test.waits", "behind the lock", account_id=1)
                return [e["id"] for e in tx.events]

            waiting = asyncio.create_task(commit())
            waiters = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            for _ in range(int(WAIT / 0.01)):
                if await other.fetchval(waiters):
                    break
                await asyncio.sleep(0.01)
            assert await other.fetchval(waiters) == 1, "the commit waits for the log's lock"
            assert await other.fetchval("SELECT last_value FROM events_id_seq") == before, "and has taken no id"
            assert not waiting.done()
            await other.execute("COMMIT")
            assert await asyncio.wait_for(waiting, WAIT) == [before + 1]
        finally:
            await other.close()


async def test_listen_tells_of_another_stores_commits_not_its_own_nor_anything_on_sqlite(
        database: Database) -> None:
    async with database.opened() as store:
        await seed(store, 2)
        heard: list[int] = []
        await asyncio.wait_for(store.listen(heard.append), WAIT)
        if store.kind == "sqlite":  # one writer: its commit hook sees every commit
            await store.disable_account(1, "told by the hook")
            assert heard == []
            return
        assert heard == [await store.last_event_id()]  # the head, when it starts listening
        await store.disable_account(1, "its own: told by the hook")
        async with database.opened() as other:
            await other.disable_account(2, "another's")
            last = await other.last_event_id()
        await until(lambda: last in heard, f"id {last} heard")
        assert heard == [last - 2, last], "its own commit is not heard"


async def test_listen_hears_another_store_and_catches_up_after_its_connection_is_killed(pg_url: str) -> None:
    async with stores(pg_url, 2) as (a, b):
        await seed(a, 3)
        heard: list[int] = []
        await a.listen(heard.append)
        assert a.listener.sessions == 1 and heard == [await a.last_event_id()]

        await b.disable_account(1, "through b")
        first = await b.last_event_id()
        await until(lambda: first in heard, "b's commit heard by a")

        assert a.listener.conn is not None
        pid = a.listener.conn.get_server_pid()
        admin = await asyncpg.connect(pg_url)
        try:  # the server ends a's listening session, and is sure it is gone before returning
            assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
        finally:
            await admin.close()
        await b.disable_account(2, "while a is not listening")  # its NOTIFY reaches no session of a's
        missed = await b.last_event_id()
        await until(lambda: missed in heard, "the commit made while a was not listening")
        assert a.listener.sessions == 2, "a listens again"
        assert a.listener.conn is not None and a.listener.conn.get_server_pid() != pid

        await b.disable_account(3, "after a listens again")
        after = await b.last_event_id()
        await until(lambda: after in heard, "a commit after the reconnection")
        assert heard == sorted(heard)
    assert a.listener.conn is None, "closing the store closes its listening connection"


async def test_the_hub_finds_a_commit_nothing_announced_by_its_poll(store: Store) -> None:
    """No commit hook, no listener: as a notification lost while the listener reconnects."""
    await seed(store, 2)
    hub = await Hub.open(store, queue_size=1000, replay_size=1000)
    sub = hub.subscribe()
    follow = asyncio.create_task(hub.run())
    try:
        await store.disable_account(2, "announced to nobody")
        got: list[Position] = []
        for _ in range(20):
            got += await asyncio.wait_for(sub.next_batch(), WAIT)
            if got:
                break
    finally:
        follow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow
    [position] = got
    assert position.seq == await store.last_event_id() == hub.seq


async def test_the_server_ends_a_listening_session_that_went_quiet_and_the_store_listens_again(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A daemon that stopped reading would hold back the notification queue every commit writes to: the
    server ends its session once idle for ``IDLE_SECONDS`` (pings, every PING_SECONDS, keep a running
    one's alive; here the idle limit is below the ping's period)."""
    monkeypatch.setattr(listener, "IDLE_SECONDS", 1)
    async with stores(pg_url, 2) as (a, b):
        heard: list[int] = []
        await a.listen(heard.append)
        await until(lambda: a.listener.sessions >= 2, "a second session after the server ended the first")
        async with b.tx() as tx:
            await tx.event("test.after", "after the server ended a quiet session")
        last = await b.last_event_id()
        await until(lambda: last in heard, "a commit heard on a later session")


async def test_a_transactions_log_rows_are_written_at_its_end_in_order_however_many(store: Store) -> None:
    """More rows than one statement takes on SQLite (LOG_ROWS_PER_INSERT): still one run of ids, in order."""
    await seed(store, 3)
    head = await store.last_event_id()
    async with store.tx() as tx:
        await tx.event("test.first", "first", account_id=1)
        await tx.events_many([{"kind": "test.many", "message": str(i), "task_id": i} for i in range(300)])
        tx.touch(2)
        assert tx.events == [] and len(tx.pending) == 301  # nothing written before the end
    assert [e["id"] for e in tx.events] == list(range(head + 1, head + 303))
    logged = await store.events_after(head, 1000)
    assert [(e["id"], e["kind"], e["task_id"]) for e in logged] == [
        (e["id"], e["kind"], e["task_id"]) for e in tx.events]
    assert [e["message"] for e in logged[1:301]] == [str(i) for i in range(300)]
    assert (logged[-1]["kind"], logged[-1]["data"]) == ("changes", {"accounts": [2], "quotas": []})


async def test_writing_an_event_waits_for_no_lock_on_its_account(pg_url: str) -> None:
    """``events`` has no foreign key: under the log's lock a commit waits for no account row another
    transaction holds (a foreign key's FOR KEY SHARE would wait for a lease's FOR UPDATE of the account)."""
    async with stores(pg_url, 1) as (store,):
        await seed(store, 1)
        other = await asyncpg.connect(pg_url)
        try:
            await other.execute("BEGIN")
            await other.execute("SELECT * FROM accounts WHERE id = 1 FOR UPDATE")

            async def commit() -> None:
                async with store.tx() as tx:
                    await tx.event("test.free", "while the account is locked", account_id=1)

            await asyncio.wait_for(commit(), WAIT)
            assert await other.fetchval("SELECT count(*) FROM events WHERE kind = 'test.free'") == 1
        finally:
            await other.execute("ROLLBACK")
            await other.close()


async def test_pruning_the_log_takes_the_logs_lock(pg_url: str) -> None:
    """Retention's DELETE locks the events' counter as a log write does; it takes the log's lock first, so
    every transaction takes the two in one order (one that prunes may log a row after: a clock step's)."""
    async with stores(pg_url, 1) as (store,):
        async with store.tx() as tx:
            await tx.event("test.old", "to be pruned")
        other = await asyncpg.connect(pg_url)
        try:
            await other.execute("BEGIN")
            await other.execute("SELECT pg_advisory_xact_lock($1)", LOG_LOCK)
            later = time.time() + 10  # every event is old by then
            pruning = asyncio.create_task(store.prune_events(before=later, limit=10, at=later))
            waiters = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            for _ in range(int(WAIT / 0.01)):
                if await other.fetchval(waiters):
                    break
                await asyncio.sleep(0.01)
            assert await other.fetchval(waiters) == 1 and not pruning.done()
            await other.execute("COMMIT")
            assert (await asyncio.wait_for(pruning, WAIT)).deleted == 1
        finally:
            await other.close()
