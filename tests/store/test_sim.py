"""The simulator's own world on both drivers: profiles kept as written, and connections that the simulated
server opens one at a time per account, times out, frees when their process is gone, and keeps a record of
(the refused ones too), so that tests can check no two connections of one account ever overlapped."""

from __future__ import annotations

import asyncio
import json
import time

from store import backdoor
from store.conftest import Database
from store.world import close_to
from tgdaemon.store import Store
from tgdaemon.store.api import SimConnection
from tgdaemon.store.simrules import KEEP_CLOSED_SECONDS

USER, OTHER = 5_000_000_001, 5_000_000_002
TIMEOUT = 60.0


def everyone(pids: list[int]) -> set[int]:
    """Every holder's process is running."""
    return set(pids)


def no_one(pids: list[int]) -> set[int]:
    """Every holder's process has exited."""
    return set()


async def test_a_profile_reads_back_as_last_written_and_none_before(store: Store) -> None:
    assert await store.sim_profile(USER) is None
    first = json.dumps({"first_name": "Alpha", "photos": [{"id": 1, "date": 1704067200.25}], "last_id": 1})
    await store.sim_save_profile(USER, first)
    await store.sim_save_profile(USER, json.dumps({"first_name": "Bravo", "photos": [], "last_id": 2}))
    saved = await store.sim_profile(USER)
    assert saved is not None and json.loads(saved) == {"first_name": "Bravo", "photos": [], "last_id": 2}
    assert await store.sim_profile(OTHER) is None


async def test_an_open_account_refuses_a_second_connection_and_both_attempts_are_on_the_record(store: Store) -> None:
    first = await store.sim_open(USER, "a", 101, everyone, TIMEOUT)
    assert isinstance(first, int)
    refused = await store.sim_open(USER, "b", 202, everyone, TIMEOUT)
    assert isinstance(refused, SimConnection)
    assert (refused.id, refused.node, refused.pid, refused.closed_at) == (first, "a", 101, None)
    assert isinstance(await store.sim_open(OTHER, "b", 202, everyone, TIMEOUT), int)  # another account: free
    held, attempt = await store.sim_connections(USER)
    assert (held.id, held.node, held.pid, held.closed_at) == (first, "a", 101, None)
    assert (attempt.node, attempt.pid, attempt.closed_why) == ("b", 202, "duplicate")
    assert attempt.opened_at == attempt.closed_at and held.opened_at <= attempt.opened_at
    assert close_to(held.opened_at, time.time()) and held.last_seen_at == held.opened_at
    assert [c.tg_user_id for c in await store.sim_connections()] == [USER, USER, OTHER]


async def test_a_closed_connection_frees_the_account(store: Store) -> None:
    first = await store.sim_open(USER, "a", 101, everyone, TIMEOUT)
    assert isinstance(first, int)
    await store.sim_close([first], "forgotten")
    await store.sim_close([first], "again")  # closing twice keeps the first close
    second = await store.sim_open(USER, "b", 202, everyone, TIMEOUT)
    assert isinstance(second, int)
    closed, held = await store.sim_connections(USER)
    assert (closed.id, closed.closed_why, held.id, held.closed_at) == (first, "forgotten", second, None)
    assert closed.closed_at is not None and closed.closed_at <= held.opened_at


async def test_a_connection_whose_process_is_gone_is_closed_by_the_next_open(store: Store) -> None:
    first = await store.sim_open(USER, "a", 101, everyone, TIMEOUT)
    asked: list[list[int]] = []

    def only_202(pids: list[int]) -> set[int]:
        asked.append(pids)
        return {202} & set(pids)

    second = await store.sim_open(USER, "b", 202, only_202, TIMEOUT)
    assert isinstance(second, int) and asked == [[101]]
    gone, held = await store.sim_connections(USER)
    assert (gone.id, gone.closed_why, gone.closed_at) == (first, "gone", held.opened_at)
    assert held.closed_at is None


async def test_a_connection_not_seen_for_the_server_timeout_is_closed_when_it_would_have_been(store: Store) -> None:
    first = await store.sim_open(USER, "a", 101, everyone, TIMEOUT)
    assert isinstance(first, int)
    stale = time.time() - TIMEOUT - 5
    await backdoor.update(store, "sim_connections", {"id": first}, opened_at=stale - 1, last_seen_at=stale)
    second = await store.sim_open(USER, "b", 202, everyone, TIMEOUT)
    assert isinstance(second, int)
    timed_out, _ = await store.sim_connections(USER)
    assert (timed_out.closed_why, timed_out.closed_at) == ("timeout", stale + TIMEOUT)


async def test_pings_keep_connections_seen_and_name_those_the_server_closed(store: Store) -> None:
    ids = [await store.sim_open(USER + i, "a", 101, everyone, TIMEOUT) for i in range(4)]
    assert all(isinstance(i, int) for i in ids)
    live, forgotten, late, dropped = ids
    await store.sim_close([forgotten], "forgotten")  # type: ignore[list-item]
    old = time.time() - 30
    await backdoor.update(store, "sim_connections", {"id": live}, last_seen_at=old)
    await backdoor.update(store, "sim_connections", {"id": late}, last_seen_at=old - TIMEOUT)
    await backdoor.update(store, "sim_connections", {"id": dropped}, last_seen_at=old)
    never = 10**9  # an id the record does not have (pruned long ago)
    closed = await store.sim_keepalive([live, forgotten, late, never], TIMEOUT)  # type: ignore[list-item]
    assert sorted(closed) == sorted([forgotten, late, never])
    by_id = {c.id: c for c in await store.sim_connections()}
    assert close_to(by_id[live].last_seen_at, time.time()) and by_id[live].closed_at is None  # type: ignore[index]
    assert (by_id[late].closed_why, by_id[late].closed_at) == ("timeout", old)  # type: ignore[index]
    assert by_id[dropped].last_seen_at == old  # type: ignore[index]  # not pinged: not seen
    assert await store.sim_keepalive([], TIMEOUT) == []


async def test_closed_records_older_than_a_day_go_when_their_account_opens_again(store: Store) -> None:
    old, recent, elsewhere = [await store.sim_open(u, "a", 101, everyone, TIMEOUT) for u in (USER, USER, OTHER)]
    # the second open of USER was refused (the first holds it); close them all, then age two of them
    await store.sim_close([old, elsewhere], "closed")  # type: ignore[list-item]
    await store.sim_close([], "closed")  # nothing to close: nothing done
    long_ago = time.time() - KEEP_CLOSED_SECONDS - 60
    await backdoor.update(store, "sim_connections", {"tg_user_id": USER}, closed_at=long_ago)
    await backdoor.update(store, "sim_connections", {"tg_user_id": OTHER}, closed_at=long_ago)
    now_open = await store.sim_open(USER, "a", 101, no_one, TIMEOUT)
    assert [c.id for c in await store.sim_connections(USER)] == [now_open]
    assert [c.id for c in await store.sim_connections(OTHER)] == [elsewhere]  # its account did not open


async def test_two_stores_on_one_database_opening_one_account_at_once_never_both_succeed(database: Database) -> None:
    """As two daemons would: each store its own writer, on the same database; every round one open wins
    and the other is told of the winner, and the record holds both attempts."""
    async with database.opened() as one, database.opened() as two:
        for round_ in range(20):
            user = USER + round_
            results = await asyncio.gather(one.sim_open(user, "a", 101, everyone, TIMEOUT),
                                           two.sim_open(user, "b", 202, everyone, TIMEOUT))
            opened = [r for r in results if isinstance(r, int)]
            refused = [r for r in results if isinstance(r, SimConnection)]
            assert len(opened) == 1 and len(refused) == 1, results
            assert refused[0].id == opened[0]
            record = await one.sim_connections(user)
            assert [c.closed_why for c in record] == [None, "duplicate"]


async def test_a_batch_of_opens_is_as_if_one_after_the_other(store: Store) -> None:
    """sim_open_many: an account named twice is opened once and refused the second time (its first connection
    is live), each other account opened; all of them on the record as single opens would leave them."""
    held = await store.sim_open(OTHER, "b", 202, everyone, TIMEOUT)
    third = USER + 7
    first, twice, refused, other_new = await store.sim_open_many([USER, USER, OTHER, third], "a", 101, everyone,
                                                                 TIMEOUT)
    assert isinstance(first, int) and isinstance(other_new, int) and first != other_new
    assert isinstance(twice, SimConnection) and twice.id == first and twice.node == "a"
    assert isinstance(refused, SimConnection) and refused.id == held and refused.node == "b"
    mine = await store.sim_connections(USER)
    assert [(c.node, c.closed_why) for c in mine] == [("a", None), ("a", "duplicate")]
    assert [(c.node, c.closed_why) for c in await store.sim_connections(OTHER)] == [("b", None), ("a", "duplicate")]
    assert [c.id for c in await store.sim_connections(third)] == [other_new]
    assert await store.sim_open_many([], "a", 101, everyone, TIMEOUT) == []


async def test_a_batch_of_saves_keeps_each_accounts_last(store: Store) -> None:
    assert await store.sim_save_profiles([(USER, '{"n": 1}'), (OTHER, '{"n": 2}'), (USER, '{"n": 3}')]) == [
        None, None, None]
    assert [json.loads(await store.sim_profile(u) or "null") for u in (USER, OTHER)] == [{"n": 3}, {"n": 2}]
