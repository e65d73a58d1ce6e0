"""A fleet of several nodes on one PostgreSQL: pull+report with 1, 2 and 3 nodes, failover, rebalancing, the stream.

Issue 12 item 8. Every node is a real ``tgdaemon run --simulate`` subprocess of its own (its own
data dir, control socket and provider port on 127.0.0.1, ``[daemon] node_name`` n1, n2, n3), all
on ONE database of one private PostgreSQL server (bench/_postgres.py: pgserver, default settings,
its Unix socket only). The same database and simulated world (10,000 accounts) serve every part,
in this order, so that the world is seeded once:

1. **Rebalance at a high rate**: n1, then n2 (spread by the balancer), then n3 joins; every node at
   ``moves_per_second = 10,000``. Timed: from n3 seen registered and alive in ``GET /v1/nodes``
   until every live node owns within 1 % of an even third (and until the spread is exact).
2. **The stream's lag**: a ``/v1/watch`` client of n1 (ControlClient.watch, what the dashboard
   uses); a few hundred disables and enables through n2's control API, one at a time; timed, for
   each, from the request sent to n2 (and from n2's answer) until n1's client has the event.
3. **Failover**: 10 × ``kill -9`` of one node (n1, n2, n3 in turn, leader or not), with the
   default node timings (heartbeat 2 s, dead after 10 s, lease 15 s); timed from the kill until
   every account is owned by one of the two survivors (``GET /v1/nodes`` on a survivor every
   0.1 s). The killed node is restarted under its name and the spread is even again before the
   next kill.
4. **Rebalance at the default rate**: every node stopped and started again with the default
   ``moves_per_second = 50``; n1 and n2 spread half and half (pinned to them, then unpinned: a
   fixture, not timed); n3 joins; timed as in 1.
5. **Pull+report throughput**: every node stopped; n1 alone (10,000 moves/s again), bench
   provider_pull.py's fixture (every worker account assigned to one provider; 10,000 inspected
   ``channel_stats`` quotas added through the store) and clients (batched by 100), spread over
   the nodes: 6 clients in all, each pulling from and reporting to one node, round robin. Timed:
   from the first pull to the last report of a backlog of 10,000 generated tasks, 3 backlogs with
   1 node, then n2 joins, 3 with 2 nodes, n3 joins, 3 with 3 nodes. Over each backlog: the CPU
   time (user + system, /proc/PID/stat) of each node's process, of the PostgreSQL server (the
   postmaster and its children), of this process (the clients) and of the whole machine.

Every loop is bounded in count and in time; every process started here is stopped by its own pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from bench import provider_pull as pp
from bench._common import Notes, clean_env, scratch_dir, stop_process, write_config
from bench._postgres import Server, private_server
from bench.report import ROOT, Result, median, percentile
from bench.stores import Variant, worker

T = TypeVar("T")

TITLE = "A fleet on several nodes: pull+report with 1-3 nodes, failover, rebalancing, the stream across nodes"
ACCOUNTS = int(os.environ.get("BENCH_NODES_ACCOUNTS", "10000"))
KILLS = int(os.environ.get("BENCH_NODES_KILLS", "10"))
STREAM_CHANGES = int(os.environ.get("BENCH_NODES_STREAM_CHANGES", "300"))
NAMES = ("n1", "n2", "n3")
HIGH_MOVES = 10_000.0
DEFAULT_MOVES = 50.0
CLIENTS = 6  # in all, whatever the number of nodes: the offered load stays the same
DRAINS = 3
STREAM_POOL = 10  # accounts the stream part disables and enables in turn
EVEN = 0.01  # "within 1 % of even"
READY_S = 90.0
FAILOVER_WAIT_S = 90.0
SPREAD_WAIT_S = 300.0
POLL_S = 0.1
SPREAD_POLL_S = 0.25
MSG_TIMEOUT_S = 10.0
STOP_GRACE_S = 20.0
TICK = os.sysconf("SC_CLK_TCK")


def _defaults() -> tuple[float, float, float]:
    from tgdaemon.config import NodesConfig

    d = NodesConfig()
    return d.heartbeat_seconds, d.dead_after_seconds, d.lease_seconds


HEARTBEAT_S, DEAD_AFTER_S, LEASE_S = _defaults()
FAILOVER_TARGET_S = DEAD_AFTER_S + LEASE_S + 2 * HEARTBEAT_S
REBALANCE_TARGET_S = round(ACCOUNTS / 3 / DEFAULT_MOVES + 10, 1)
STREAM_TARGET_MS = 1000.0

ABOUT = f"""\
Issue 12 item 8. Up to 3 `tgdaemon run --simulate` subprocesses (nodes n1-n3, each with its own data
dir, control socket and provider port on 127.0.0.1) on ONE database of a private PostgreSQL server
(pgserver, default settings: fsync and `synchronous_commit` on; its Unix socket only), one simulated
world of {ACCOUNTS:,} accounts, seeded once by n1. Node timings are the defaults (heartbeat
{HEARTBEAT_S:g} s, dead after {DEAD_AFTER_S:g} s, lease {LEASE_S:g} s); `moves_per_second` is
{HIGH_MOVES:,.0f} everywhere except in the rebalance at the default rate ({DEFAULT_MOVES:g}), because
putting a restarted node's share back at 50 a second would take a minute per restart (a dead node's
accounts are handed out at once whatever the rate). **Rebalance**: 2 nodes own the {ACCOUNTS:,} half
and half, a 3rd joins; timed from the moment it is seen registered and alive in `GET /v1/nodes` until
every live node owns within {EVEN * 100:g} % of an even third (polled every {SPREAD_POLL_S:g} s), at
{HIGH_MOVES:,.0f} and at {DEFAULT_MOVES:g} moves/s (for the latter, the half-and-half start is made by
pinning and unpinning, untimed). **Stream lag**: a `/v1/watch` client of n1 (`ControlClient.watch`,
the dashboard's), {STREAM_CHANGES} disables and enables of {STREAM_POOL} accounts through n2's control
socket, one at a time; per change, from the request sent to n2 until n1's client holds the
`account.disabled`/`account.enabled` event (the commit on n2 included). **Failover**: {KILLS} ×
`kill -9` of n1, n2, n3 in turn (3 nodes, the fleet idle); timed from the kill until the two
survivors own all {ACCOUNTS:,} (`GET /v1/nodes` on a survivor every {POLL_S:g} s); the killed node is
restarted and the spread even again before the next kill. **Pull+report**: bench/provider_pull.py's
fixture (every worker account assigned to one provider, {ACCOUNTS:,} inspected `channel_stats`
quotas added through the store) and clients, batched by {pp.BATCH}: {CLIENTS} clients in all, spread
round robin over the nodes, each pulling from and reporting to its node; timed from the first pull to
the last report of a backlog of {ACCOUNTS - 1:,} tasks (the leader generates one every 10 s),
{DRAINS} backlogs with 1, 2 and 3 nodes; CPU (user + system from /proc) of each node, of the
PostgreSQL server (postmaster and children), of the clients (this process) and of the whole machine,
over each backlog, in cores (CPU seconds per second; this machine has {os.cpu_count()}). Targets:
failover median within dead_after + lease + 2 heartbeats ({FAILOVER_TARGET_S:g} s); rebalance at
{DEFAULT_MOVES:g}/s within {ACCOUNTS:,} / 3 / {DEFAULT_MOVES:g} + 10 s; stream lag p99 under
{STREAM_TARGET_MS:.0f} ms; throughput with 2 and 3 nodes at least that of 1 node."""

_notes = Notes()


def notes() -> list[str]:
    return list(_notes)


# ---- CPU from /proc -----------------------------------------------------------------------------------------------

def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def process_cpu(pid: int) -> float:
    """User + system seconds of one process (all its threads); NaN once it is gone."""
    fields = _stat(pid)
    return float("nan") if fields is None else (int(fields[11]) + int(fields[12])) / TICK


def server_cpu(pid: int) -> float:
    """CPU seconds of the PostgreSQL server: the postmaster with its reaped children, and its live children."""
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is None:
            continue
        if int(entry.name) == pid:
            total += sum(int(f) for f in fields[11:15]) / TICK
        elif int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def machine_cpu() -> float:
    """Busy CPU seconds of the whole machine since boot, every core: user, nice, system, irq and softirq
    (idle, iowait and the hypervisor's steal left out)."""
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in Path("/proc/stat").read_text().split()[1:8])
    return (user + nice + system + irq + softirq) / TICK


@dataclass
class Cpu:
    nodes: dict[str, float]
    server: float
    clients: float
    machine: float
    at: float

    @classmethod
    def now(cls, pids: dict[str, int], server_pid: int) -> Cpu:
        return cls({name: process_cpu(pid) for name, pid in pids.items()}, server_cpu(server_pid),
                   time.process_time(), machine_cpu(), time.perf_counter())

    def cores(self, later: Cpu) -> dict[str, float]:
        """Cores busy between the two readings, by part; ``other`` is the machine's rest (other work)."""
        span = later.at - self.at
        out = {name: (later.nodes[name] - self.nodes[name]) / span for name in self.nodes}
        out["PostgreSQL"] = (later.server - self.server) / span
        out["clients"] = (later.clients - self.clients) / span
        out["machine"] = (later.machine - self.machine) / span
        out["other"] = out["machine"] - sum(v for k, v in out.items() if k != "machine")
        return out


# ---- the nodes ----------------------------------------------------------------------------------------------------

def node_config(moves: float) -> str:
    """bench/provider_pull.py's daemon settings (a backlog of one task per account every 10 s, no local
    executor, no simulated faults), the given balancer rate, the default node timings."""
    return f"[nodes]\nmoves_per_second = {moves}\n" + pp.daemon_config(ACCOUNTS)


@dataclass
class Node:
    name: str
    root: Path
    proc: asyncio.subprocess.Process | None = None
    http: str | None = None
    moves: float = HIGH_MOVES

    @property
    def socket(self) -> Path:
        return self.root / "d.sock"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def log_tail(self) -> str:
        logs = sorted(self.root.glob("daemon-*.log"))
        try:
            lines = logs[-1].read_text(errors="replace").strip().splitlines() if logs else []
        except OSError:
            return "(no log)"
        return " | ".join(lines[-3:]) or "(no output)"


async def poll(check: Callable[[], Awaitable[T | None]], what: str, *, timeout: float,
               interval: float = POLL_S) -> T:
    """``check()`` until it gives something other than None or False, bounded in count and time; a node
    between lives (its socket gone, an answer refused) is looked at again."""
    from tgdaemon.errors import TgfleetError

    last: Any = None
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 2):
        try:
            last = await check()
        except (TgfleetError, aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            last = exc
        else:
            if last is not None and last is not False:
                return last
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(interval)
    raise RuntimeError(f"{what}: not within {timeout:.0f} s (last: {last!r})"[:400])


class Fleet:
    """Nodes n1-n3 on one database; started, stopped (SIGTERM), killed (SIGKILL), always by their own pid."""

    def __init__(self, work: Path, url: str, config: Callable[[float], str] = node_config) -> None:
        self.url = url
        self.config = config  # a node's config file from its balancer rate (bench/ceiling.py runs setup instead)
        self.nodes = {name: Node(name, work / name) for name in NAMES}
        for node in self.nodes.values():
            node.root.mkdir()

    async def start(self, name: str, moves: float) -> Node:
        """A new process for ``name``; returns once it answers and ``GET /v1/nodes`` shows it alive."""
        from tgdaemon.control.client import ControlClient

        node = self.nodes[name]
        assert not node.running, f"{name} is already running"
        node.moves, node.http = moves, None
        cfg = write_config(node.root, self.config(moves), node_name=name)
        log = node.root / f"daemon-{time.time_ns()}.log"
        cmd = [sys.executable, "-m", "tgdaemon", "run", "--simulate", "--config", str(cfg), "--accounts",
               str(ACCOUNTS), "--data-dir", str(node.root / "data"), "--socket", str(node.socket),
               "--http", "127.0.0.1:0", "--store", self.url]
        with log.open("wb") as out:
            node.proc = await asyncio.create_subprocess_exec(
                *cmd, stdout=out, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
                env=clean_env(ROOT), cwd=str(ROOT))
        pid = node.proc.pid

        async def registered() -> str | None:
            if node.proc is None or node.proc.returncode is not None:
                raise RuntimeError(f"{name} exited with {node.proc.returncode if node.proc else None}:"
                                   f" {node.log_tail()}")
            if not node.socket.exists():
                return None
            async with ControlClient(node.socket, timeout=10) as c:
                status = await c.status()
                listed = (await c.nodes())["nodes"]
            alive = any(n["name"] == name and n["pid"] == pid and n["alive"] for n in listed)
            return status["http"] if alive and status["node"] == name else None

        try:
            node.http = await poll(registered, f"{name} (pid {pid}) registered and alive", timeout=READY_S)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; its log: {node.log_tail()}") from None
        return node

    def kill(self, name: str) -> None:
        node = self.nodes[name]
        assert node.proc is not None and node.running
        node.proc.kill()
        node.http = None

    async def reap(self, name: str) -> None:
        node = self.nodes[name]
        if node.proc is not None:
            await asyncio.wait_for(node.proc.wait(), 10)

    async def stop(self, *names: str) -> None:
        """A clean stop (SIGTERM): each node lets its accounts go as it leaves."""
        await asyncio.gather(*(stop_process(self.nodes[n].proc, STOP_GRACE_S) for n in names
                               if self.nodes[n].proc is not None))
        for n in names:
            self.nodes[n].http = None

    async def close(self) -> None:
        await self.stop(*(n.name for n in self.nodes.values() if n.running))

    def live(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.running]

    def pids(self) -> dict[str, int]:
        return {n.name: n.proc.pid for n in self.live() if n.proc is not None}

    async def listing(self, via: str) -> list[dict[str, Any]]:
        from tgdaemon.control.client import ControlClient

        async with ControlClient(self.nodes[via].socket, timeout=10) as c:
            return (await c.nodes())["nodes"]

    async def owned(self, via: str) -> dict[str, int]:
        """Accounts owned by each live node, as ``via`` answers ``GET /v1/nodes``."""
        return {n["name"]: n["accounts"] for n in await self.listing(via) if n["alive"]}


def even(counts: dict[str, int], names: list[str], total: int, slack: float) -> bool:
    """Every one of ``names`` owns within ``slack`` of an even share, and together they own every account."""
    share = total / len(names)
    return (sum(counts.get(n, 0) for n in names) == total
            and all(abs(counts.get(n, 0) - share) <= max(slack * share, 1.0) for n in names))


async def wait_even(fleet: Fleet, names: list[str], total: int, what: str, slack: float = EVEN) -> None:
    async def check() -> bool:
        return even(await fleet.owned(names[0]), names, total, slack)
    await poll(check, what, timeout=SPREAD_WAIT_S, interval=SPREAD_POLL_S)


# ---- 1 and 4: a node joins ----------------------------------------------------------------------------------------

@dataclass
class Join:
    moves: float
    registered_s: float  # from the process's start to registered and alive
    within_s: float  # from registered to within 1 % of even
    exact_s: float  # from registered to an exact spread (no node more than one account from another)
    samples: list[tuple[float, dict[str, int]]] = field(default_factory=list)


async def join(fleet: Fleet, name: str, moves: float, total: int) -> Join:
    names = [n.name for n in fleet.live()] + [name]
    spawned = time.monotonic()
    await fleet.start(name, moves)
    registered = time.monotonic()
    samples: list[tuple[float, dict[str, int]]] = []
    within: float | None = None
    deadline = registered + SPREAD_WAIT_S
    for _ in range(int(SPREAD_WAIT_S / SPREAD_POLL_S) + 2):
        counts = await fleet.owned(names[0])
        at = time.monotonic() - registered
        samples.append((at, counts))
        if within is None and even(counts, names, total, EVEN):
            within = at
        if within is not None and even(counts, names, total, 0.0):
            return Join(moves, registered - spawned, within, at, samples)
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(SPREAD_POLL_S)
    raise RuntimeError(f"{name} joined at {moves:g} moves/s: the spread was not even within {SPREAD_WAIT_S:.0f} s"
                       f" (last {samples[-1][1] if samples else None})")


async def half_and_half(fleet: Fleet, ids: list[int], total: int) -> None:
    """n1 and n2 own half each, at once (pinned, which assigns at once whatever the rate), then unpinned:
    the balancer then finds the spread even and moves nothing."""
    from tgdaemon.control.client import ControlClient

    half = len(ids) // 2
    async with ControlClient(fleet.nodes["n1"].socket, timeout=60) as c:
        await c.request("POST", "/accounts/pin", body={"ids": ids[:half], "node": "n1"})
        await c.request("POST", "/accounts/pin", body={"ids": ids[half:], "node": "n2"})

        async def owned() -> bool:
            counts = await fleet.owned("n1")
            return counts.get("n1") == half and counts.get("n2") == total - half
        await poll(owned, "n1 and n2 owning the half pinned to each", timeout=SPREAD_WAIT_S, interval=SPREAD_POLL_S)
        await c.request("POST", "/accounts/unpin", body={"ids": ids})
    await asyncio.sleep(2 * HEARTBEAT_S + 0.5)  # two balancer ticks: nothing must move
    counts = await fleet.owned("n1")
    if counts.get("n1") != half or counts.get("n2") != total - half:
        raise RuntimeError(f"after unpinning, the balancer moved accounts between n1 and n2: {counts}")


# ---- 2: the stream's lag ------------------------------------------------------------------------------------------

@dataclass
class Lag:
    sent_ms: list[float]  # from the request sent through B to the event at A's client
    answered_ms: list[float]  # from B's answer to the event at A's client (negative: it came first)


async def stream_lag(fleet: Fleet, ids: list[int]) -> Lag:
    from tgdaemon.control.client import ControlClient

    seen: asyncio.Queue[tuple[float, str, int]] = asyncio.Queue()
    snapshot = asyncio.Event()

    async def read(stream: AsyncIterator[dict[str, Any]]) -> None:
        async for msg in stream:
            if msg.get("type") == "snapshot":
                snapshot.set()
            elif msg.get("kind") == "event" and msg["data"].get("kind") in ("account.disabled", "account.enabled"):
                seen.put_nowait((time.perf_counter(), msg["data"]["kind"], msg["data"].get("account_id")))

    pool = ids[:STREAM_POOL]
    lag = Lag([], [])
    async with ControlClient(fleet.nodes["n1"].socket, timeout=60) as on_a, \
            ControlClient(fleet.nodes["n2"].socket, timeout=10) as on_b:
        async with contextlib.aclosing(on_a.watch()) as stream:
            reader = asyncio.create_task(read(stream))
            try:
                await asyncio.wait_for(snapshot.wait(), 60)
                for i in range(STREAM_CHANGES):
                    account = pool[(i // 2) % len(pool)]
                    kind = "account.disabled" if i % 2 == 0 else "account.enabled"
                    sent = time.perf_counter()
                    answer = await (on_b.disable(account, "bench: the stream's lag") if i % 2 == 0
                                    else on_b.enable(account))
                    answered = time.perf_counter()
                    if answer.get("changed") is False:
                        raise RuntimeError(f"change {i} of account {account} through n2 changed nothing: {answer}")
                    for _ in range(10_000):  # bounded: other events may come between
                        at, got_kind, got_id = await asyncio.wait_for(seen.get(), MSG_TIMEOUT_S)
                        if got_kind == kind and got_id == account:
                            break
                    else:
                        raise RuntimeError(f"{kind} of account {account} never reached n1's stream")
                    lag.sent_ms.append((at - sent) * 1000)
                    lag.answered_ms.append((at - answered) * 1000)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
    return lag


# ---- 3: failover --------------------------------------------------------------------------------------------------

@dataclass
class Kill:
    victim: str
    leader: bool
    accounts: int
    seconds: float  # from the kill until the survivors own every account
    dead_s: float | None  # from the kill until a survivor lists it as not alive
    new_leader_s: float | None  # when it led: until a survivor leads


async def failover(fleet: Fleet, total: int) -> list[Kill]:
    kills: list[Kill] = []
    for k in range(KILLS):
        victim = NAMES[k % len(NAMES)]
        survivors = [n for n in NAMES if n != victim]
        listed = {n["name"]: n for n in await fleet.listing(survivors[0])}
        if sum(n["accounts"] for n in listed.values() if n["alive"]) != total:
            raise RuntimeError(f"before kill {k + 1}, not every account is owned by a live node: {listed}")
        was_leader = bool(listed[victim]["leader"])
        accounts = listed[victim]["accounts"]
        fleet.kill(victim)
        killed = time.monotonic()
        await fleet.reap(victim)
        dead_s: float | None = None
        new_leader_s: float | None = None
        done: float | None = None
        deadline = killed + FAILOVER_WAIT_S
        for _ in range(int(FAILOVER_WAIT_S / POLL_S) + 2):
            try:
                rows = await fleet.listing(survivors[0])
            except Exception:  # a survivor's answer lost: the next look decides
                rows = []
            at = time.monotonic() - killed
            by = {n["name"]: n for n in rows}
            if rows and dead_s is None and not by.get(victim, {}).get("alive", True):
                dead_s = at
            if rows and was_leader and new_leader_s is None and any(by[s]["leader"] and by[s]["alive"]
                                                                    for s in survivors if s in by):
                new_leader_s = at
            if rows and sum(by[s]["accounts"] for s in survivors if s in by) == total:
                done = at
                break
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(POLL_S)
        if done is None:
            raise RuntimeError(f"kill {k + 1} of {victim}: its {accounts} accounts were not all owned by"
                               f" {' and '.join(survivors)} within {FAILOVER_WAIT_S:.0f} s")
        kills.append(Kill(victim, was_leader, accounts, done, dead_s, new_leader_s))
        print(f"  nodes: kill {k + 1}/{KILLS} of {victim}{' (leader)' if was_leader else ''}: {accounts} accounts"
              f" owned by the survivors after {done:.1f} s", flush=True)
        await fleet.start(victim, HIGH_MOVES)
        await wait_even(fleet, list(NAMES), total, f"the spread even again after {victim} restarted")
    return kills


# ---- 5: pull+report -----------------------------------------------------------------------------------------------

@dataclass
class Drains:
    nodes: int
    rates: list[float] = field(default_factory=list)
    runs: list[tuple[int, float]] = field(default_factory=list)
    cores: list[dict[str, float]] = field(default_factory=list)

    def median_cores(self) -> dict[str, float]:
        return {k: median([c[k] for c in self.cores]) for k in self.cores[0]}


async def fixture(fleet: Fleet, pg: Server) -> tuple[str, list[int]]:
    """bench/provider_pull.py's: a provider, every worker account assigned to it, the quotas (through the
    store, beside the running daemon, by bench/_stores_worker.py)."""
    from tgdaemon.control.client import ControlClient

    async with ControlClient(fleet.nodes["n1"].socket, timeout=60) as control:
        token = (await control.request("POST", "/providers", body={"name": "bench"}))["token"]
        ids = [a["id"] for a in await control.all_accounts() if not a["is_probe"]]
        await control.request("POST", "/accounts/assign", body={"ids": ids, "executor": "bench"})
    await worker(Variant("postgresql", "PostgreSQL", ROOT, "postgresql"), "seed-quotas",
                 {"url": fleet.url, "count": ACCOUNTS}, timeout=600)
    return token, ids


async def throughput(fleet: Fleet, pg: Server, token: str, workers: int) -> Drains:
    from tgdaemon.control.client import ControlClient

    live = fleet.live()
    out = Drains(len(live))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with ControlClient(fleet.nodes["n1"].socket, timeout=60) as control, \
            aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=64)) as http:
        clients = [pp.Provider(http, f"http://{node.http}") for _, node in zip(range(CLIENTS), itertools.cycle(live))]
        for _ in range(DRAINS):
            await pp.wait_backlog(clients[0], control, workers)
            before = Cpu.now(fleet.pids(), pg.pid)
            took, applied = await pp.drain(clients)
            after = Cpu.now(fleet.pids(), pg.pid)
            if applied < workers:
                raise RuntimeError(f"a backlog of {workers} drained with {applied} applied ({len(live)} nodes)")
            out.rates.append(applied / took)
            out.runs.append((applied, took))
            out.cores.append(before.cores(after))
    return out


# ---- the run ------------------------------------------------------------------------------------------------------

@dataclass
class Figures:
    joins: dict[float, Join] = field(default_factory=dict)
    lag: Lag | None = None
    kills: list[Kill] = field(default_factory=list)
    drains: list[Drains] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


async def measure(work: Path, pg: Server, fig: Figures) -> None:
    from tgdaemon.control.client import ControlClient

    fleet = Fleet(work, await pg.create("tgn"))
    try:
        part = time.monotonic()
        await fleet.start("n1", HIGH_MOVES)
        async with ControlClient(fleet.nodes["n1"].socket, timeout=60) as c:
            async def seeded() -> int | None:
                n = sum((await c.status())["accounts"].values())
                return n if n >= ACCOUNTS else None
            total = await poll(seeded, f"n1 seeding {ACCOUNTS:,} accounts", timeout=READY_S, interval=0.5)
            accounts = await c.all_accounts()
        ids = sorted(a["id"] for a in accounts)
        plain = sorted(a["id"] for a in accounts if not a["is_probe"])
        await wait_even(fleet, ["n1"], total, "n1 owning every account")
        await fleet.start("n2", HIGH_MOVES)
        await wait_even(fleet, ["n1", "n2"], total, "n1 and n2 half and half")
        fig.timings["seed and 2 nodes"] = time.monotonic() - part

        part = time.monotonic()
        fig.joins[HIGH_MOVES] = await join(fleet, "n3", HIGH_MOVES, total)
        fig.timings[f"join at {HIGH_MOVES:,.0f}/s"] = time.monotonic() - part
        print(f"  nodes: n3 joined at {HIGH_MOVES:,.0f} moves/s: within 1 % of even after"
              f" {fig.joins[HIGH_MOVES].within_s:.1f} s", flush=True)

        part = time.monotonic()
        fig.lag = await stream_lag(fleet, plain)
        fig.timings["stream"] = time.monotonic() - part
        print(f"  nodes: stream lag p99 {percentile(fig.lag.sent_ms, 99):.1f} ms", flush=True)

        part = time.monotonic()
        fig.kills = await failover(fleet, total)
        fig.timings["failover"] = time.monotonic() - part

        part = time.monotonic()
        await fleet.stop(*NAMES)
        await fleet.start("n1", DEFAULT_MOVES)
        await wait_even(fleet, ["n1"], total, "n1 owning every account again")
        await fleet.start("n2", DEFAULT_MOVES)
        await half_and_half(fleet, ids, total)
        fig.joins[DEFAULT_MOVES] = await join(fleet, "n3", DEFAULT_MOVES, total)
        fig.timings[f"join at {DEFAULT_MOVES:g}/s"] = time.monotonic() - part
        print(f"  nodes: n3 joined at {DEFAULT_MOVES:g} moves/s: within 1 % of even after"
              f" {fig.joins[DEFAULT_MOVES].within_s:.1f} s", flush=True)

        part = time.monotonic()
        await fleet.stop(*NAMES)
        await fleet.start("n1", HIGH_MOVES)
        await wait_even(fleet, ["n1"], total, "n1 owning every account again")
        token, workers = await fixture(fleet, pg)
        for n in range(1, len(NAMES) + 1):
            if n > 1:
                await fleet.start(NAMES[n - 1], HIGH_MOVES)
                await wait_even(fleet, list(NAMES[:n]), total, f"{n} nodes spread")
            fig.drains.append(await throughput(fleet, pg, token, len(workers)))
            print(f"  nodes: pull+report with {n} node(s): {median(fig.drains[-1].rates):,.0f} tasks/s", flush=True)
        fig.timings["pull+report"] = time.monotonic() - part
    finally:
        await fleet.close()
        await pg.drop(fleet.url)


def _ms(values: list[float]) -> str:
    return f"median {median(values):.1f} ms, p99 {percentile(values, 99):.1f} ms, max {max(values):.1f} ms"


def results(fig: Figures) -> list[Result]:
    out: list[Result] = []
    base = median(fig.drains[0].rates) if fig.drains else None
    for d in fig.drains:
        c = d.median_cores()
        per_node = ", ".join(f"{n} {c[n]:.2f}" for n in NAMES[:d.nodes])
        out.append(Result(f"pull+report, batched by {pp.BATCH}, {d.nodes} node{'s' if d.nodes > 1 else ''}"
                          f" ({CLIENTS} clients; median of {len(d.rates)} backlogs)"
                          + (", against 1 node" if d.nodes > 1 else ""),
                          round(median(d.rates)), "tasks/s",
                          target=None if d.nodes == 1 or base is None else round(base), lower_is_better=False,
                          note=f"each: {', '.join(f'{r:,.0f}' for r in d.rates)}; cores busy: {per_node},"
                               f" PostgreSQL {c['PostgreSQL']:.2f}, clients {c['clients']:.2f},"
                               f" machine {c['machine']:.2f}"))
    if fig.kills:
        secs = [k.seconds for k in fig.kills]
        out.append(Result(f"failover after kill -9: median of {len(secs)} (until the survivors own all its accounts)",
                          round(median(secs), 1), "s", target=FAILOVER_TARGET_S,
                          note=f"dead_after {DEAD_AFTER_S:g} + lease {LEASE_S:g} + 2 × heartbeat {HEARTBEAT_S:g};"
                               f" min {min(secs):.1f} s"))
        out.append(Result(f"failover after kill -9: max of {len(secs)}", round(max(secs), 1), "s",
                          note=f"leader killed {sum(k.leader for k in fig.kills)} times"))
    for moves in (DEFAULT_MOVES, HIGH_MOVES):
        j = fig.joins.get(moves)
        if j is None:
            continue
        out.append(Result(f"rebalance of {ACCOUNTS:,} accounts when a 3rd node joins, {moves:,.0f} moves/s"
                          " (until within 1 % of even)", round(j.within_s, 1), "s",
                          target=REBALANCE_TARGET_S if moves == DEFAULT_MOVES else None,
                          note=(f"{ACCOUNTS:,} / 3 / {DEFAULT_MOVES:g} + 10 s; " if moves == DEFAULT_MOVES else "")
                               + f"exact spread after {j.exact_s:.1f} s; start to registered {j.registered_s:.1f} s"))
    if fig.lag is not None:
        lag = fig.lag
        out.append(Result(f"stream lag, a change through n2 to a /v1/watch client of n1: median of"
                          f" {len(lag.sent_ms)}", round(median(lag.sent_ms), 1), "ms",
                          note="from the request sent to n2 (its commit included)"))
        out.append(Result(f"stream lag: p99 of {len(lag.sent_ms)}", round(percentile(lag.sent_ms, 99), 1), "ms",
                          target=STREAM_TARGET_MS, note=f"max {max(lag.sent_ms):.1f} ms"))
    return out


def explain(fig: Figures, load_after: str) -> None:
    _notes.clear()
    if fig.drains:
        _notes.add("Pull+report, where the CPU went (medians over the backlogs, in cores busy; the machine"
                   f" has {os.cpu_count()}; \"other\" is the rest of the machine's busy time: processes that are not this"
                   " benchmark's, and the kernel's interrupt time):")
        _notes.append("")
        _notes.append("| nodes | tasks/s | backlogs (tasks in s) | " + " | ".join(NAMES) +
                      " | PostgreSQL | clients | other | machine |")
        _notes.append("|---|---|---|" + "---|" * len(NAMES) + "---|---|---|---|")
        for d in fig.drains:
            c = d.median_cores()
            cells = [f"{c[n]:.2f}" if n in c else "—" for n in NAMES]
            _notes.append(f"| {d.nodes} | {median(d.rates):,.0f} | "
                          + ", ".join(f"{n:,} in {s:.2f}" for n, s in d.runs)
                          + f" | {' | '.join(cells)} | {c['PostgreSQL']:.2f} | {c['clients']:.2f} | {c['other']:.2f}"
                          f" | {c['machine']:.2f} |")
        _notes.add(saturation(fig.drains))
    if fig.kills:
        _notes.add("Failover, each kill (seconds from the kill: seen dead by a survivor / a survivor leads /"
                   " every account owned by the survivors):")
        _notes.append("")
        for i, k in enumerate(fig.kills, 1):
            dead = "—" if k.dead_s is None else f"{k.dead_s:.1f}"
            lead = f" / leads {k.new_leader_s:.1f}" if k.leader and k.new_leader_s is not None else ""
            _notes.append(f"- {i}. {k.victim}{' (the leader)' if k.leader else ''}, {k.accounts:,} accounts:"
                          f" dead {dead}{lead} / owned {k.seconds:.1f}")
        _notes.add(f"A dead node's accounts are handed out at once (no rate limit) once it is dead ({DEAD_AFTER_S:g} s)"
                   f" and taken by their new owners once its lease has run out ({LEASE_S:g} s after its last"
                   " heartbeat), at their next heartbeat; a dead leader's work waits for its leadership lease too.")
    for moves, j in sorted(fig.joins.items()):
        points = [f"{at:.1f} s: {'/'.join(str(counts.get(n, 0)) for n in NAMES)}"
                  for at, counts in j.samples[:: max(1, len(j.samples) // 8)]]
        _notes.add(f"Join at {moves:,.0f} moves/s, accounts owned by n1/n2/n3 over time: " + "; ".join(points) + ".")
    if fig.lag is not None:
        _notes.add(f"Stream lag measured from n2's answer instead (the commit done): {_ms(fig.lag.answered_ms)}"
                   " (negative: n1's client had it before n2's answer reached this process).")
    _notes.add("Time per part (s): " + ", ".join(f"{k} {v:.0f}" for k, v in fig.timings.items())
               + f". PostgreSQL via pgserver {metadata.version('pgserver')}, asyncpg {metadata.version('asyncpg')};"
               f" load average when the run ended {load_after}.")


def saturation(drains: list[Drains]) -> str:
    """What limits pull+report, said from the figures: the machine's cores, one process's core, or neither."""
    cores = os.cpu_count() or 1
    parts = []
    for d in drains:
        c = d.median_cores()
        ours = {k: v for k, v in c.items() if k not in ("machine", "other")}
        top = max(ours, key=lambda k: ours[k])
        full = c["machine"] >= 0.9 * cores
        parts.append(f"{d.nodes} node{'s' if d.nodes > 1 else ''}: the machine {c['machine']:.2f} of {cores} cores"
                     f" busy{' (saturated)' if full else ''}, the largest share {top} at {ours[top]:.2f}"
                     + (" (one process at a full core)" if ours[top] >= 0.9 else ""))
    return ("**What saturates**: " + "; ".join(parts) + ". A node is one event loop on one core; on "
            f"{cores} cores shared by the nodes, the PostgreSQL server and the clients, more nodes spread the"
            " daemons' share of the work but add no CPU: what a second or third node can gain is only the"
            " part of one node's core it took off.")


async def run() -> list[Result]:
    fig = Figures()
    started = time.monotonic()
    with scratch_dir("tgbn-") as work:
        async with private_server(work / "pg") as pg:
            await measure(work, pg, fig)
    fig.timings["all"] = time.monotonic() - started
    one, five, _ = os.getloadavg()
    explain(fig, f"{one:.1f} (1 min), {five:.1f} (5 min)")
    return results(fig)


if __name__ == "__main__":
    for res in asyncio.run(run()):
        print(res.name, res.shown_value(), res.verdict())
    print("\n".join(_notes))
