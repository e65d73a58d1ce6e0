"""One simulated Telegram for several processes on one PostgreSQL database (design 9, issue 12 item 6).

Each simulator here has a store of its own on the test's database, as each daemon would. Two of them in
this process stand for two processes: each is given the pid of a real process (a ``sleep``) as its own,
so the server's liveness check (``os.kill(pid, 0)``) runs as it does for daemons. The holder that is
killed or stopped is a real subprocess (tests/simholder.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from pgtest import PgServer, database_of
from simrecord import overlaps
from telethon import errors

from tgdaemon.classify import ErrorClass, classify
from tgdaemon.config import SimulatorConfig
from tgdaemon.errors import NotOwned
from tgdaemon.gateway.base import AccountRef, MediaFile, PrivacyKey, PrivacyValue
from tgdaemon.gateway.simulator import Simulator
from tgdaemon.store import Store
from tgdaemon.store.postgres import PostgresStore

HOLDER = Path(__file__).with_name("simholder.py")
QUIET = dict(latency_min_ms=0, latency_max_ms=0, flood_wait_rate=0.0, peer_flood_rate=0.0, transient_rate=0.0,
             dead_fraction=0.0)
SEED, ACCOUNTS = 11, 6
PHOTO = MediaFile(Path("/media/avatar.jpg"), "photo", 640, 640)
STORY = MediaFile(Path("/media/story.jpg"), "photo", 1080, 1920)
LINE_SECONDS = 30.0


def config(server_timeout: float = 75.0) -> SimulatorConfig:
    return SimulatorConfig(seed=SEED, accounts=ACCOUNTS, server_timeout_seconds=server_timeout, **QUIET)  # type: ignore[arg-type]


ACCOUNT = AccountRef(id=1, tg_user_id=Simulator(config()).accounts[0].tg_user_id)
UID: int = ACCOUNT.tg_user_id  # type: ignore[assignment]


@pytest.fixture
def url(pg_server: PgServer) -> Iterator[str]:
    name = pg_server.create()
    try:
        yield pg_server.url(name)
    finally:
        pg_server.drop(name)


@pytest.fixture
def stand_in() -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """A real process whose pid an in-process simulator takes as its own."""
    made: list[subprocess.Popen[bytes]] = []

    def new() -> subprocess.Popen[bytes]:
        made.append(subprocess.Popen(["sleep", "600"]))
        return made[-1]

    yield new
    for proc in made:
        proc.kill()
        proc.wait()


@asynccontextmanager
async def simulator(url: str, node: str, pid: int, *, server_timeout: float = 75.0,
                    idle_seconds: float = 300.0) -> AsyncIterator[tuple[Simulator, Store]]:
    """A started simulator on a store of its own, as one daemon has it; closed after the block."""
    store = await PostgresStore.open(url)
    sim = Simulator(config(server_timeout), node=node, pid=pid, idle_seconds=idle_seconds)
    try:
        await sim.start(store)
        yield sim, store
    finally:
        await sim.close()
        await store.close()


@asynccontextmanager
async def holder(url: str, server_timeout: float) -> AsyncIterator[subprocess.Popen[str]]:
    """A subprocess holding ACCOUNT's connection (tests/simholder.py), once it says it is connected."""
    proc = subprocess.Popen([sys.executable, str(HOLDER), url, str(SEED), str(ACCOUNTS), str(UID),
                             str(server_timeout)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert await said(proc) == "connected"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


async def said(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return (await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), LINE_SECONDS)).strip()


async def call(proc: subprocess.Popen[str]) -> str:
    assert proc.stdin is not None
    proc.stdin.write("call\n")
    proc.stdin.flush()
    return await said(proc)


async def opens_within(sim: Simulator, seconds: float, step: float) -> int:
    """Calls until one gets through (the other holder let go, or was let go); the refusals before it."""
    refused = 0
    for _ in range(int(seconds / step) + 1):
        try:
            await sim.get_me(ACCOUNT)
            return refused
        except (errors.AuthKeyDuplicatedError, TimeoutError):  # TimeoutError: stopped mid-write, its locks held
            refused += 1
            await asyncio.sleep(step)
    raise AssertionError(f"still refused after {refused} tries in {seconds} s")


async def test_a_profile_changed_by_one_process_is_the_next_ones_after_the_account_moves(
        url: str, stand_in: Callable[[], subprocess.Popen[bytes]]) -> None:
    async with simulator(url, "a", stand_in().pid) as (a, store), simulator(url, "b", stand_in().pid) as (b, _):
        was = await b.get_me(ACCOUNT)  # b sees the seeded profile, then lets the account go
        await b.forget(ACCOUNT.id)
        await a.set_name(ACCOUNT, "Moved", "Along")
        await a.enable_2fa(ACCOUNT, "s3cret")
        await a.set_privacy(ACCOUNT, PrivacyKey.LAST_SEEN, PrivacyValue.NOBODY)
        photo = await a.set_profile_photo(ACCOUNT, PHOTO)
        story = await a.send_story(ACCOUNT, STORY)
        photos, stories = await a.profile_photos(ACCOUNT), await a.my_stories(ACCOUNT)
        await a.forget(ACCOUNT.id)

        me = await b.get_me(ACCOUNT)  # the account moved: b's connection reads the store's profile
        assert (was.first_name, was.last_name) != ("Moved", "Along")
        assert (me.first_name, me.last_name) == ("Moved", "Along")
        assert await b.has_2fa(ACCOUNT)
        assert await b.get_privacy(ACCOUNT, PrivacyKey.LAST_SEEN) == PrivacyValue.NOBODY
        assert (await b.profile_photos(ACCOUNT), await b.my_stories(ACCOUNT)) == (photos, stories)
        assert await b.send_story(ACCOUNT, STORY) == max(photo, story) + 1  # one id counter, carried over
        assert "s3cret" not in (await store.sim_profile(UID) or "")  # the password itself is never kept
        record = await store.sim_connections(UID)
        assert [(c.node, c.closed_why) for c in record] == [("b", "forgotten"), ("a", "forgotten"), ("b", None)]
        assert overlaps(record) == []


async def test_a_second_connection_is_refused_as_auth_key_duplicated_and_both_are_on_the_record(
        url: str, stand_in: Callable[[], subprocess.Popen[bytes]]) -> None:
    a_pid, b_pid = stand_in().pid, stand_in().pid
    async with simulator(url, "a", a_pid) as (a, store), simulator(url, "b", b_pid) as (b, _):
        await a.get_me(ACCOUNT)
        with pytest.raises(errors.AuthKeyDuplicatedError) as refused:
            await b.get_me(ACCOUNT)
        assert classify(refused.value).kind is ErrorClass.DEAD_ACCOUNT  # what makes an overlap visible
        other = AccountRef(id=2, tg_user_id=a.accounts[1].tg_user_id)
        await b.get_me(other)  # another account is b's to connect
        held, attempt = await store.sim_connections(UID)
        assert (held.node, held.pid, held.closed_at) == ("a", a_pid, None)
        assert (attempt.node, attempt.pid, attempt.closed_why) == ("b", b_pid, "duplicate")
        assert overlaps(await store.sim_connections()) == [(held, attempt)]


async def test_the_gate_refuses_before_anything_is_sent_or_recorded(
        url: str, stand_in: Callable[[], subprocess.Popen[bytes]]) -> None:
    class Closed:
        def allows(self, account_id: int) -> bool:
            return False

        def epoch(self, account_id: int) -> int | None:
            return None

    async with simulator(url, "a", stand_in().pid) as (a, store):
        a.gate = Closed()
        with pytest.raises(NotOwned, match="account 1"):
            await a.get_me(ACCOUNT)
        assert await store.sim_connections() == []


@asynccontextmanager
async def database_away(pg_server: PgServer, url: str) -> AsyncIterator[None]:
    """The database refuses connections and its sessions are ended, for the block: every store on it is
    down until it is back (the server itself keeps running)."""
    name = database_of(url)
    admin = await asyncpg.connect(pg_server.admin_url)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = $1", name)
        try:
            yield
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    finally:
        await admin.close()


async def test_a_connection_let_go_while_the_store_is_away_is_closed_on_the_record_once_it_is_back(
        url: str, pg_server: PgServer, stand_in: Callable[[], subprocess.Popen[bytes]]) -> None:
    other = AccountRef(id=2, tg_user_id=Simulator(config()).accounts[1].tg_user_id)
    async with simulator(url, "a", stand_in().pid) as (a, store), simulator(url, "b", stand_in().pid) as (b, _):
        shared = a.shared
        assert shared is not None
        await a.get_me(ACCOUNT)
        await a.get_me(other)
        async with database_away(pg_server, url):
            await a.forget(ACCOUNT.id)  # a fenced node lets go of every client: each is disconnected
            await a.forget(other.id)
            assert not shared.connected(UID) and not shared.connected(other.tg_user_id)
        await a.get_me(ACCOUNT)  # its own close is written first: no second holder of its own
        await shared.ping()  # the next ping round writes the others'
        await b.get_me(other)  # another process finds the account free
        assert [c.closed_why for c in await store.sim_connections(UID)] == ["forgotten", None]
        assert [(c.node, c.closed_why) for c in await store.sim_connections(other.tg_user_id)] == [
            ("a", "forgotten"), ("b", None)]
        assert overlaps(await store.sim_connections()) == []


async def test_idle_connections_close_and_the_next_call_opens_anew(
        url: str, stand_in: Callable[[], subprocess.Popen[bytes]]) -> None:
    async with simulator(url, "a", stand_in().pid, idle_seconds=0.2) as (a, store):
        await a.get_me(ACCOUNT)
        for _ in range(100):  # bounded: the idle check runs every 0.1 s
            record = await store.sim_connections(UID)
            if record[0].closed_at is not None:
                break
            await asyncio.sleep(0.05)
        assert [c.closed_why for c in record] == ["idle"]
        await a.get_me(ACCOUNT)
        assert [c.closed_why for c in await store.sim_connections(UID)] == ["idle", None]


async def test_pings_keep_a_quiet_connection_open_past_the_server_timeout(
        url: str, stand_in: Callable[[], subprocess.Popen[bytes]]) -> None:
    async with simulator(url, "a", stand_in().pid, server_timeout=3.0) as (a, store), \
            simulator(url, "b", stand_in().pid, server_timeout=3.0) as (b, _):
        await a.get_me(ACCOUNT)
        [opened] = await store.sim_connections(UID)
        await asyncio.sleep(2 * 3.0)  # no call in between: only a's pings keep it
        [seen] = await store.sim_connections(UID)
        assert seen.closed_at is None and seen.last_seen_at > opened.last_seen_at + 3.0
        with pytest.raises(errors.AuthKeyDuplicatedError):
            await b.get_me(ACCOUNT)
        await a.get_me(ACCOUNT)  # still the same connection: no new record
        assert [c.closed_why for c in await store.sim_connections(UID)] == [None, "duplicate"]


async def test_a_killed_holder_frees_the_account(url: str, stand_in: Callable[[], subprocess.Popen[bytes]]) -> None:
    async with simulator(url, "b", stand_in().pid) as (b, store):
        async with holder(url, 75.0) as proc:
            with pytest.raises(errors.AuthKeyDuplicatedError):
                await b.get_me(ACCOUNT)  # the holder is alive: refused
            proc.send_signal(signal.SIGKILL)
            proc.wait()  # reaped: its pid is gone (a zombie would still count as a process)
        await b.get_me(ACCOUNT)  # long before the server timeout: the holder's process is gone
        gone, refused, held = await store.sim_connections(UID)
        assert (gone.node, gone.pid, gone.closed_why) == ("holder", proc.pid, "gone")
        assert refused.closed_why == "duplicate" and held.closed_at is None
        assert gone.closed_at == held.opened_at
        assert overlaps([gone, held]) == []


async def test_a_silent_holder_is_timed_out_and_finds_its_connection_gone_when_it_wakes(
        url: str, stand_in: Callable[[], subprocess.Popen[bytes]]) -> None:
    timeout = 2.0
    async with simulator(url, "b", stand_in().pid, server_timeout=timeout) as (b, store), \
            holder(url, timeout) as proc:
        # Stopped for longer than the timeout with no one else wanting the account: it connects anew.
        os.kill(proc.pid, signal.SIGSTOP)
        await asyncio.sleep(timeout * 1.5)
        os.kill(proc.pid, signal.SIGCONT)
        assert await call(proc) == "ok"
        first, second = await store.sim_connections(UID)
        assert first.closed_why in ("timeout", "reconnect") and second.closed_at is None

        # Stopped again: the server times it out, b takes the account, and the holder is refused on waking.
        os.kill(proc.pid, signal.SIGSTOP)
        await opens_within(b, 10 * timeout, timeout / 4)
        os.kill(proc.pid, signal.SIGCONT)
        assert await call(proc) == "AuthKeyDuplicatedError"
        record = await store.sim_connections(UID)
        timed_out = next(c for c in record if c.id == second.id)
        taken = next(c for c in record if c.node == "b" and c.closed_why is None)
        assert timed_out.closed_why == "timeout" and timed_out.closed_at == timed_out.last_seen_at + timeout
        assert timed_out.closed_at <= taken.opened_at
        real = [c for c in record if c.closed_why != "duplicate"]
        assert overlaps(real) == []  # only refused attempts ever met a live connection
        assert {c.node for c in record if c.closed_why == "duplicate"} <= {"b", "holder"}


async def test_a_holder_stopped_in_the_middle_of_a_write_delays_an_open_but_never_stalls_it(
        url: str, stand_in: Callable[[], subprocess.Popen[bytes]]) -> None:
    """A process stopped (SIGSTOP) inside a transaction keeps its row locks: an open gives up after the
    lock timeout as a connection attempt that timed out (transient), and works once the locks are gone."""
    async with simulator(url, "b", stand_in().pid) as (b, store):
        stalled = await asyncpg.connect(url)  # stands for the stopped process's connection, mid-transaction
        try:
            await stalled.execute("BEGIN")
            await stalled.execute("INSERT INTO sim_profiles (tg_user_id) VALUES ($1)", UID)
            with pytest.raises(TimeoutError, match="in the middle of a write") as timed_out:
                await b.get_me(ACCOUNT)
            assert classify(timed_out.value).kind is ErrorClass.TRANSIENT
            await b.get_me(AccountRef(id=2, tg_user_id=b.accounts[1].tg_user_id))  # the writer is not stuck
        finally:
            await stalled.close()  # the stopped process dies: its transaction ends with it
        await b.get_me(ACCOUNT)
        assert [c.closed_why for c in await store.sim_connections(UID)] == [None]


async def test_an_open_whose_call_was_given_up_is_closed_on_the_record(
        url: str, stand_in: Callable[[], subprocess.Popen[bytes]]) -> None:
    """Opens of several accounts go to the store in one batch; a call cancelled while its open waits for the
    batch leaves no connection open on the record that this process does not hold: it is closed, "error"."""
    pid = stand_in().pid
    async with simulator(url, "a", pid) as (sim, store):
        other = AccountRef(id=2, tg_user_id=sim.accounts[1].tg_user_id)
        kept = asyncio.create_task(sim.get_me(ACCOUNT))
        given_up = asyncio.create_task(sim.get_me(other))
        await asyncio.sleep(0)  # both opens are handed in
        given_up.cancel()
        with pytest.raises(asyncio.CancelledError):
            await given_up
        assert (await kept).user_id == UID
    [made] = await (opened := await PostgresStore.open(url)).sim_connections(other.tg_user_id)
    [held] = await opened.sim_connections(UID)
    await opened.close()
    assert (made.pid, made.closed_why) == (pid, "error") and made.closed_at is not None
    assert (held.pid, held.closed_why) == (pid, "closed")  # at the close, as every connection it held
