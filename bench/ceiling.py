"""One daemon's ceiling on this machine: accounts with every listing under 1 s, what a Telegram client costs,
what runs out first, and what a second node on the same host adds.

Issue 13 item 6. Three measurements, then the arithmetic:

1. **Accounts per daemon**: a fresh ``tgdaemon run --simulate`` subprocess (SQLite, its defaults) per fleet
   size, growing 10,000 / 25,000 / 50,000 / 100,000 / 200,000 accounts, setup enabled with all four media
   paths (8 tasks per account, dispatched by the daemon at start and then running at the simulator's
   default latency) and a few quotas. Timed through ``ControlClient`` over the Unix socket while setup
   runs: the full account listing (pages of 5,000, the CLI's), the setup tasks as the CLI lists them, one
   account's tasks, the quotas, the events and ``status``. The growth stops after the first size where
   one of them takes a second or more.
2. **A connected Telegram client**: bench/_mtproto.py, in two processes of their own: a local MTProto
   server on 127.0.0.1 and the daemon's own ``TelethonGateway`` (its ``ClientPool``, store-backed
   sessions and ``TelegramClient`` construction) connecting 100 / 1,000 / 2,000 accounts to it over real
   TCP, with real MTProto 2.0 encryption. RSS and descriptors of the clients' process per connected client,
   the memory a client keeps once disconnected, the CPU of a connect and of a call, the CPU of holding
   them idle.
3. **A second node**: bench/nodes.py's harness (its ``Fleet`` of node subprocesses on one private
   PostgreSQL server): the setup scheduler's throughput with 10,000 accounts on one node, then on two
   nodes on this host, each on a fresh database.

Every loop is bounded in count and time; every process started here is stopped by its own pid.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import nodes
from bench._common import (
    Notes,
    Timings,
    clean_env,
    daemon_subprocess,
    rss_mb,
    scratch_dir,
    stop_process,
    timed_runs,
)
from bench._postgres import Server, private_server
from bench.report import ROOT, Result, median
from bench.setup_pipeline import make_media

TITLE = "One daemon's ceiling: accounts per daemon, what a Telegram client costs, what runs out first, a second node"


def _ints(name: str, default: str) -> list[int]:
    return [int(x) for x in os.environ.get(name, default).split(",") if x.strip()]


SIZES = _ints("BENCH_CEILING_SIZES", "10000,25000,50000,100000,200000")
CLIENTS = _ints("BENCH_CEILING_CLIENTS", "100,1000,2000,5000")
KEPT = 1000  # clients made and never connected: what the pool keeps of an account it let go of
IDLE_S = float(os.environ.get("BENCH_CEILING_IDLE_S", "60"))  # one keepalive ping of every client (Telethon: 60 s)
CALLS = 2000
NODE_WINDOW_S = float(os.environ.get("BENCH_CEILING_NODE_WINDOW_S", "30"))
LISTING_TARGET_MS = 1000.0
LISTING_TIMEOUT_S = 30.0
PAGE = 5000  # tgdaemon/cli/admin.py's PAGE: what `tgdaemon accounts list` asks per request
TASKS_LIMIT = 100_000
CLI_TASKS = 1000  # `tgdaemon setup tasks`'s default --limit
EVENTS_LIMIT = 5000
QUOTAS = 40
SEED_WAIT_S = 300.0
DISPATCH_WAIT_S = 300.0
CLIENTS_TIMEOUT_S = 420.0
NODE_FAST, NODE_MEDIA = 256, 64  # queues wide enough that the simulator's latency is not what limits a node
TICK = os.sysconf("SC_CLK_TCK")


def unit_nofile() -> int:
    """``LimitNOFILE`` of the shipped systemd unit: the descriptor limit the daemon runs with as a service."""
    text = (ROOT / "contrib" / "systemd" / "tgdaemon.service").read_text()
    found = re.search(r"^LimitNOFILE=(\d+)", text, re.M)
    return int(found.group(1)) if found else 1024


def _limits() -> tuple[int, int, int, int]:
    from tgdaemon.config import Config
    from tgdaemon.lifecycle.limits import (
        ACCEPT_BACKLOG,
        MIN_CONNECTIONS,
        OTHER_DESCRIPTORS,
    )

    return ACCEPT_BACKLOG, OTHER_DESCRIPTORS, MIN_CONNECTIONS, Config().daemon.max_http_connections


ACCEPT_BACKLOG, OTHER_DESCRIPTORS, MIN_CONNECTIONS, MAX_HTTP = _limits()
UNIT_NOFILE = unit_nofile()

ABOUT = f"""\
Issue 13 item 6. **Accounts per daemon**: a fresh `tgdaemon run --simulate` subprocess per fleet size
({', '.join(f'{s:,}' for s in SIZES)} accounts; SQLite, the daemon's defaults), setup enabled with all four
media paths (real small files: 8 tasks per worker account, created by the daemon's own dispatch at start
and then running at the simulator's default latency and fault rates, fast 32 / media 4), {QUOTAS} quotas.
Timed through `ControlClient` over the Unix socket while setup runs, after one untimed warm-up, median
of up to 3: the full account listing (pages of {PAGE:,}, as `tgdaemon accounts list`), the setup tasks
as `tgdaemon setup tasks` lists them (`limit={CLI_TASKS}`), one account's tasks (the dashboard's detail
view), the quotas, the events (`limit={EVENTS_LIMIT}`, the API's most) and `status`: each has the target
{LISTING_TARGET_MS:.0f} ms, and the growth stops after the first size where one misses it. Also timed,
with no target: the API's largest task listing (`limit={TASKS_LIMIT:,}`), an answer whose size stops
growing with the fleet at {TASKS_LIMIT // 8:,} accounts. **A connected Telegram client**: bench/_mtproto.py, two processes of their
own: a local MTProto server on 127.0.0.1 (TCP "full" framing, MTProto 2.0 encryption both ways,
containers, acks, pings; it answers what `TelegramClient.connect()` asks and `users.getUsers`) and the
daemon's own `TelethonGateway` (`ClientPool`, store-backed sessions, `TelegramClient` built by
`new_client`) on a SQLite store whose {max(CLIENTS) + KEPT:,} accounts have sessions with auth keys
pointing at that server; each client is connected by a call (`gateway.get_me`: the pool connects it,
`InitConnection` + `help.getConfig`, `users.getUsers`, `updates.getState`, `updates.getDifference`,
then the call), 50 at a time, up to {', '.join(f'{c:,}' for c in CLIENTS)} connected. Measured in the
clients' process: RSS and open descriptors per connected client, RSS per client made and not connected
(what the pool keeps of every account it has connected once), CPU per connect, CPU while
{IDLE_S:.0f} s idle (a keepalive ping each), CPU per call over {CALLS:,} calls. Not included: the
Diffie-Hellman key exchange (sessions come with keys, as the daemon's do), the kernel's socket buffers
(not in RSS), what a real Telegram server sends unasked (updates, `new_session_created`). **A second
node**: bench/nodes.py's `Fleet` (node subprocesses on one private PostgreSQL server, pgserver, its
Unix socket), {nodes.ACCOUNTS:,} accounts, setup enabled (8 tasks per account, no simulated faults,
the simulator's default latency, queues fast {NODE_FAST} / media {NODE_MEDIA} so that latency is not the
limit); one node, then two on this host, each on a fresh database; throughput = completed setup tasks
(done + failed, from `status`) over a {NODE_WINDOW_S:.0f} s window once the nodes own half each; CPU
from /proc over the window."""

_notes = Notes()


def notes() -> list[str]:
    return list(_notes)


# ---- 1: accounts per daemon ---------------------------------------------------------------------------------------

def setup_config(media: dict[str, str], *, fast: int = 32, media_q: int = 4) -> str:
    paths = "\n".join(f'{k} = "{v}"' for k, v in media.items())
    return f"""
[setup]
enabled = true
dispatch_interval_seconds = 3600.0
[setup.media]
{paths}
[setup.queues]
fast_concurrency = {fast}
media_concurrency = {media_q}
[setup.profile]
first_name = "Bench"
last_name = "Fleet"
"""


@dataclass
class Listing:
    name: str
    label: str
    timings: Timings
    rows: int
    judged: bool  # one of the listings the ceiling is judged by (not a fixed-size answer)

    @property
    def median_ms(self) -> float:
        return median(self.timings.ms) if self.timings.ms else self.timings.limit_ms

    @property
    def over(self) -> bool:
        return self.judged and (not self.timings.ms or self.median_ms >= LISTING_TARGET_MS)


@dataclass
class Size:
    accounts: int
    seed_s: float
    dispatch_s: float
    tasks: int
    rss_mb: float
    listings: list[Listing] = field(default_factory=list)

    @property
    def over(self) -> bool:
        return any(listing.over for listing in self.listings)


def _rows(answer: Any) -> int:
    if isinstance(answer, list):
        return len(answer)
    if isinstance(answer, dict):
        for key in ("tasks", "events", "quotas", "accounts"):
            if isinstance(answer.get(key), list):
                return len(answer[key])
    return 0


async def poll(check: Callable[[], Awaitable[Any]], what: str, timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 2):
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(interval)
    raise RuntimeError(f"{what}: not within {timeout:.0f} s")


async def add_quotas(client: Any) -> None:
    from tgdaemon.config import SimulatorConfig

    channels = SimulatorConfig().channels
    for i in range(QUOTAS):
        await client.request("POST", "/quotas", body={
            "name": f"bench-{i}", "target": f"@{channels[i % len(channels)]}", "action": "post_stats",
            "last_n_posts": 3, "quantity": 1000, "interval_seconds": 60, "expires_in_seconds": 86400})


async def one_size(work: Path, media: dict[str, str], accounts: int) -> Size:
    from tgdaemon.control.client import ControlClient

    work.mkdir()
    started = time.monotonic()
    async with daemon_subprocess(work, accounts=accounts, ready_timeout=SEED_WAIT_S, stop_grace=10.0,
                                 config=setup_config(media)) as daemon:
        async with ControlClient(daemon.socket, timeout=LISTING_TIMEOUT_S * 4) as client:
            async def seeded() -> bool:
                return sum((await client.status())["accounts"].values()) >= accounts
            await poll(seeded, f"seeding {accounts:,} accounts", SEED_WAIT_S)
            seed_s = time.monotonic() - started

            async def dispatched() -> int:
                return sum((await client.status())["tasks"].get("setup", {}).values())
            tasks = await poll(dispatched, f"the first setup dispatch at {accounts:,} accounts", DISPATCH_WAIT_S)
            dispatch_s = time.monotonic() - started - seed_s
            await add_quotas(client)
            size = Size(accounts, seed_s, dispatch_s, tasks, 0.0)
            middle = accounts // 2
            calls: list[tuple[str, str, bool, Callable[[], Awaitable[Any]]]] = [
                ("accounts", f"every account, pages of {PAGE:,}", True, lambda: client.all_accounts(page=PAGE)),
                ("tasks", f"setup tasks, `limit={CLI_TASKS}` (the CLI's default)", True,
                 lambda: client.request("GET", "/tasks", params={"limit": CLI_TASKS})),
                ("account's tasks", "one account's setup tasks (the dashboard's detail)", True,
                 lambda: client.request("GET", "/tasks", params={"account_id": middle})),
                ("quotas", "quotas", True, lambda: client.request("GET", "/quotas")),
                ("events", f"events, `limit={EVENTS_LIMIT}` (the API's most)", True,
                 lambda: client.events(limit=EVENTS_LIMIT)),
                ("status", "`status`", True, client.status),
                ("tasks 100k", f"setup tasks, `limit={TASKS_LIMIT:,}` (the API's most: a fixed-size answer)", False,
                 lambda: client.request("GET", "/tasks", params={"limit": TASKS_LIMIT})),
            ]
            for name, label, judged, fn in calls:
                t = await timed_runs(fn, runs=3, budget_s=LISTING_TIMEOUT_S, timeout_s=LISTING_TIMEOUT_S)
                size.listings.append(Listing(name, label, t, _rows(t.last), judged))
            size.rss_mb = rss_mb(daemon.pid)
    return size


async def accounts_part(work: Path, media: dict[str, str]) -> list[Size]:
    out: list[Size] = []
    for accounts in SIZES:
        size = await one_size(work / f"a{accounts}", media, accounts)
        out.append(size)
        shown = ", ".join(f"{x.name} {x.median_ms:,.0f} ms" for x in size.listings)
        print(f"  ceiling: {accounts:,} accounts: {shown}; daemon RSS {size.rss_mb:,.0f} MiB", flush=True)
        if size.over:
            break
    return out


# ---- 2: a connected Telegram client -------------------------------------------------------------------------------

async def clients_part(work: Path) -> dict[str, Any]:
    """The MTProto server and the clients' process (bench/_mtproto.py), both stopped by pid at the end."""
    env = clean_env(ROOT)
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench._mtproto", "serve", "--keys", str(max(CLIENTS) + KEPT + 1),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=env, cwd=str(ROOT))
    try:
        assert server.stdout is not None and server.stdin is not None
        line = (await asyncio.wait_for(server.stdout.readline(), 30)).decode()
        if not line.startswith("port "):
            raise RuntimeError(f"the MTProto server did not start: {line!r}")
        port = int(line.split()[1])
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench._mtproto", "clients", "--port", str(port),
            "--sizes", ",".join(map(str, CLIENTS)), "--kept", str(KEPT), "--idle", str(IDLE_S),
            "--calls", str(CALLS), "--work", str(work), "--deadline", str(CLIENTS_TIMEOUT_S - 30),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
            env=env, cwd=str(ROOT))
        try:
            out, err = await asyncio.wait_for(proc.communicate(), CLIENTS_TIMEOUT_S)
        except TimeoutError:
            await stop_process(proc, 5)
            raise RuntimeError(f"the clients' process: no answer within {CLIENTS_TIMEOUT_S:.0f} s") from None
        if proc.returncode != 0:
            tail = " | ".join(err.decode(errors="replace").strip().splitlines()[-3:])
            raise RuntimeError(f"the clients' process: exit {proc.returncode}: {tail}")
        figures: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        server.stdin.close()  # the server's end: it prints what it was asked
        tail, _ = await asyncio.wait_for(server.communicate(), 30)
        lines = tail.decode().strip().splitlines()
        figures["server"] = json.loads(lines[-1]) if lines else {}
        return figures
    finally:
        await stop_process(server, 5)


# ---- 3: a second node ---------------------------------------------------------------------------------------------

@dataclass
class Nodes:
    nodes: int
    completed: int
    seconds: float
    cores: dict[str, float]
    cpu_per_task_ms: float  # the nodes' CPU together, per completed task
    total: int

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0


def _completed(status: dict[str, Any]) -> tuple[int, int]:
    setup = status["tasks"].get("setup", {})
    return setup.get("done", 0) + setup.get("failed", 0), sum(setup.values())


async def node_run(work: Path, pg: Server, media: dict[str, str], count: int) -> Nodes:
    """``count`` nodes, each owning its share before setup starts: placed with setup off (pinned, half and half,
    for two), then every node restarted with setup on; the leader's dispatch at start makes the tasks.
    (Moving accounts while their tasks run sends those tasks to retry: not what is measured here.)"""
    from tgdaemon.control.client import ControlClient

    setup_on = False

    def config(moves: float) -> str:
        simulator = ("[simulator]\ndead_fraction = 0.0\nflood_wait_rate = 0.0\npeer_flood_rate = 0.0\n"
                     "transient_rate = 0.0\n")
        setup = setup_config(media, fast=NODE_FAST, media_q=NODE_MEDIA) if setup_on else ""
        return f"[nodes]\nmoves_per_second = {moves}\n" + setup + simulator

    work.mkdir()
    fleet = nodes.Fleet(work, await pg.create("tgc"), config=config)
    names = list(nodes.NAMES[:count])
    try:
        await fleet.start("n1", nodes.HIGH_MOVES)
        async with ControlClient(fleet.nodes["n1"].socket, timeout=60) as c:
            async def seeded() -> int | None:
                n = sum((await c.status())["accounts"].values())
                return n if n >= nodes.ACCOUNTS else None
            total = await nodes.poll(seeded, f"n1 seeding {nodes.ACCOUNTS:,} accounts", timeout=nodes.READY_S,
                                     interval=0.5)
            ids = sorted(a["id"] for a in await c.all_accounts())
        if count > 1:
            for name in names[1:]:
                await fleet.start(name, nodes.HIGH_MOVES)
            share = -(-len(ids) // count)
            async with ControlClient(fleet.nodes["n1"].socket, timeout=60) as c:
                for i, name in enumerate(names):
                    await c.request("POST", "/accounts/pin", body={"ids": ids[i * share:(i + 1) * share], "node": name})
            await nodes.wait_even(fleet, names, total, f"{count} nodes owning the share pinned to each")
        await fleet.stop(*names)
        setup_on = True
        for name in names:
            await fleet.start(name, nodes.HIGH_MOVES)
        await nodes.wait_even(fleet, names, total, f"{count} node(s) owning their share again, setup on")
        async with ControlClient(fleet.nodes["n1"].socket, timeout=60) as c:
            async def dispatched() -> int | None:
                return _completed(await c.status())[1] or None
            tasks = await nodes.poll(dispatched, "the first setup dispatch", timeout=DISPATCH_WAIT_S, interval=0.5)
            done0, _ = _completed(await c.status())
            before = nodes.Cpu.now(fleet.pids(), pg.pid)
            deadline = time.monotonic() + NODE_WINDOW_S
            done = done0
            for _ in range(int(NODE_WINDOW_S / 0.5) + 2):  # bounded; ends early when the tasks run out
                await asyncio.sleep(0.5)
                done, _ = _completed(await c.status())
                if time.monotonic() >= deadline or done >= 0.95 * tasks:
                    break
            after = nodes.Cpu.now(fleet.pids(), pg.pid)
        span = after.at - before.at
        completed = done - done0
        cores = before.cores(after)
        per_task = sum(after.nodes[n] - before.nodes[n] for n in names) * 1000 / completed if completed else 0.0
        return Nodes(count, completed, span, cores, per_task, tasks)
    finally:
        await fleet.close()
        await pg.drop(fleet.url)


async def commit_ms(pg: Server, commits: int = 100) -> float:
    """One small autocommitted INSERT after another on the server (each waits for its WAL flush): what a node's
    one writer connection pays per transaction on this machine's disk."""
    import asyncpg

    url = await pg.create("tgf")
    try:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            await conn.execute("CREATE TABLE t (id bigserial PRIMARY KEY, v text)")
            started = time.perf_counter()
            for _ in range(commits):
                await conn.execute("INSERT INTO t (v) VALUES ('x')")
            return (time.perf_counter() - started) * 1000 / commits
        finally:
            await conn.close()
    finally:
        await pg.drop(url)


async def nodes_part(work: Path, media: dict[str, str]) -> tuple[list[Nodes], float]:
    out: list[Nodes] = []
    async with private_server(work / "pg") as pg:
        commit = await commit_ms(pg)
        for count in (1, 2):
            out.append(await node_run(work / f"nodes{count}", pg, media, count))
            print(f"  ceiling: setup with {count} node(s): {out[-1].rate:,.0f} tasks/s", flush=True)
    return out, commit


# ---- results and the arithmetic -----------------------------------------------------------------------------------

@dataclass
class Client:
    """What one client costs, from the clients' process."""
    connected_kib: float
    kept_kib: float
    fds: float
    connect_ms: float
    call_ms: float
    idle_us_per_s: float
    top: int


def client_costs(fig: dict[str, Any]) -> Client:
    last = fig["steps"][-1]
    connects = sum(s["new"] for s in fig["steps"])
    idle = fig["idle"]
    return Client(
        connected_kib=last["rss_kib"] / last["connected"], kept_kib=fig["objects"]["rss_kib"] / fig["objects"]["clients"],
        fds=last["fds"] / last["connected"], connect_ms=sum(s["connect_cpu_s"] for s in fig["steps"]) * 1000 / connects,
        call_ms=fig["calls"]["cpu_s"] * 1000 / fig["calls"]["calls"],
        idle_us_per_s=idle["cpu_s"] / idle["seconds"] / idle["connected"] * 1e6, top=last["connected"])


def default_max_connected() -> int:
    from tgdaemon.config import TelegramConfig

    return TelegramConfig().max_connected


def memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return float("nan")


def account_results(sizes: list[Size]) -> list[Result]:
    out: list[Result] = []
    for size in sizes:
        for x in size.listings:
            t = x.timings
            if t.ms:
                note = f"{x.rows:,} rows; median of {len(t.ms)}" + (" (stopped by its time limit)" if t.timed_out else "")
                out.append(Result(f"{size.accounts:,} accounts: {x.label}", round(x.median_ms, 1), "ms",
                                  LISTING_TARGET_MS if x.judged else None, note=note))
            else:
                out.append(Result(f"{size.accounts:,} accounts: {x.label}", t.limit_ms, "ms",
                                  LISTING_TARGET_MS if x.judged else None, at_least=True,
                                  note=f"no answer within {t.limit_ms / 1000:.0f} s"))
    held = [s.accounts for s in sizes if not s.over]
    last = sizes[-1]
    grew_to = "every size tried" if not last.over else f"{last.accounts:,} was over"
    out.append(Result("accounts one daemon holds with every listing under 1 s (SQLite, setup running)",
                      f"{held[-1]:,}" if held else f"< {sizes[0].accounts:,}",
                      note=f"sizes tried: {', '.join(f'{s.accounts:,}' for s in sizes)} ({grew_to})"))
    return out


def client_results(fig: dict[str, Any], c: Client) -> list[Result]:
    out: list[Result] = []
    for step in fig["steps"]:
        out.append(Result(f"{step['connected']:,} clients connected: RSS growth of the clients' process",
                          round(step["rss_kib"] / 1024, 1), "MiB",
                          note=f"{step['rss_kib'] / step['connected']:.1f} KiB and {step['fds'] / step['connected']:.2f}"
                               f" descriptors per client; {step['new']:,} connects took"
                               f" {step['connect_cpu_s']:.2f} s CPU ({step['connect_cpu_s'] * 1000 / step['new']:.2f} ms"
                               f" each), {step['connect_wall_s']:.1f} s"))
    mib = c.connected_kib / 1024
    out.append(Result("memory per connected client", round(mib, 3), "MiB",
                      note=f"{c.connected_kib:.1f} KiB at {c.top:,} connected; today's estimate was about 0.06 MB"))
    out.append(Result("connected clients per GiB of memory", round(1024 / mib), "clients"))
    out.append(Result("file descriptors per connected client", round(c.fds, 2), "fds", note="its TCP socket"))
    out.append(Result("memory a client keeps once disconnected (the pool keeps it while the daemon runs)",
                      round(c.kept_kib, 1), "KiB", note=f"{fig['objects']['clients']:,} clients made, never connected"))
    first = fig["steps"][0]
    out.append(Result(f"CPU per connect, the first {first['connected']:,} (InitConnection, getUsers, getState,"
                      " getDifference, then the call)", round(first["connect_cpu_s"] * 1000 / first["new"], 2), "ms",
                      note=f"over every step: {c.connect_ms:.2f} ms; it grows with the clients connected (above)"))
    out.append(Result(f"the pool's pass before a connect (`ClientPool._make_room`), {c.top:,} connected",
                      round(fig["make_room_ms"], 2), "ms",
                      note="it looks through every client it holds; CPU time, median of 21 passes, garbage collection off"))
    out.append(Result("CPU per call (users.getUsers through the pool, encrypted, over TCP)", round(c.call_ms, 3), "ms",
                      note=f"{fig['calls']['calls']:,} calls, 100 at a time, over {fig['calls']['connected']:,} clients"))
    out.append(Result(f"CPU holding {fig['idle']['connected']:,} clients idle for {fig['idle']['seconds']:.0f} s",
                      round(fig["idle"]["cpu_s"] / fig["idle"]["seconds"] * 100, 2), "% of a core",
                      note=f"{c.idle_us_per_s:.1f} µs per client per second (a keepalive ping each minute)"))
    return out


def node_results(runs: list[Nodes], commit: float) -> list[Result]:
    out: list[Result] = [Result("PostgreSQL: one small autocommitted INSERT (a commit waits for its WAL flush)",
                                round(commit, 2), "ms", note="100 in a row on one connection, the private server")]
    base = runs[0].rate if runs else 0.0
    for r in runs:
        per_node = ", ".join(f"{n} {r.cores[n]:.2f}" for n in nodes.NAMES[:r.nodes])
        out.append(Result(f"setup scheduler, {nodes.ACCOUNTS:,} accounts, PostgreSQL, {r.nodes} node{'s' if r.nodes > 1 else ''}"
                          " on this host", round(r.rate), "tasks/s",
                          note=f"{r.completed:,} tasks in {r.seconds:.1f} s of {r.total:,}; cores busy: {per_node},"
                               f" PostgreSQL {r.cores['PostgreSQL']:.2f}, machine {r.cores['machine']:.2f};"
                               f" the nodes' CPU per task {r.cpu_per_task_ms:.2f} ms"))
    if len(runs) > 1 and base:
        out.append(Result("what a second node on this host adds (2 nodes ÷ 1)", round(runs[1].rate / base, 2), "×",
                          note=f"{os.cpu_count()} cores shared by the nodes, PostgreSQL and the rest of the machine"))
    return out


def arithmetic(sizes: list[Size], fig: dict[str, Any] | None, c: Client | None, runs: list[Nodes],
               commit: float) -> list[Result]:
    """What runs out first, said from the figures, into the notes; and as one result."""
    out: list[Result] = []
    if sizes:
        rows = ["| accounts | seeded in | setup tasks | daemon RSS | " +
                " | ".join(x.name for x in sizes[0].listings) + " |",
                "|---|---|---|---|" + "---|" * len(sizes[0].listings)]
        for s in sizes:
            rows.append(f"| {s.accounts:,} | {s.seed_s:.0f} s | {s.tasks:,} | {s.rss_mb:,.0f} MiB | "
                        + " | ".join(f"{x.median_ms:,.0f} ms" for x in s.listings) + " |")
        _notes.add("Listings by fleet size (medians; each while setup runs):")
        _notes.append("")
        _notes.extend(rows)
    if c is None or fig is None:
        return out
    ram = memory_gib()
    base_mb = sizes[-1].rss_mb if sizes else 0.0
    fd_room = UNIT_NOFILE - ACCEPT_BACKLOG - OTHER_DESCRIPTORS - MAX_HTTP
    by_fds = int(fd_room / c.fds)
    by_memory = int((ram * 1024 - base_mb) * 1024 / c.connected_kib)
    by_idle_core = int(1e6 / c.idle_us_per_s) if c.idle_us_per_s > 0 else 0
    first = min((by_fds, "file descriptors"), (by_memory, "memory"), (by_idle_core, "the one core (idle clients)"))
    calls_per_core = 1000 / c.call_ms
    steps = fig["steps"]
    step_ms = [s["connect_cpu_s"] * 1000 / s["new"] for s in steps]
    slowest = max(step_ms)
    connects_per_core = 1000 / slowest
    _notes.add(
        f"**What runs out first, holding connections** (the arithmetic; per connected client: {c.connected_kib:.1f}"
        f" KiB, {c.fds:.2f} descriptors, {c.idle_us_per_s:.1f} µs of CPU a second idle; and {c.kept_kib:.1f} KiB"
        f" for every account connected once, kept while the daemon runs). "
        f"*Descriptors*: under the shipped unit's `LimitNOFILE={UNIT_NOFILE}`, less the accept burst"
        f" ({ACCEPT_BACKLOG}), the daemon's own ({OTHER_DESCRIPTORS}) and a full provider port ({MAX_HTTP:,}),"
        f" {fd_room:,} are left: {by_fds:,} clients. *Memory*: this machine's {ram:.1f} GiB, less the daemon's"
        f" {base_mb:,.0f} MiB at {sizes[-1].accounts if sizes else 0:,} accounts: {by_memory:,} clients."
        f" *The one core*, idle: {by_idle_core:,} clients. So **{first[1]}** run out first, at about"
        f" {first[0]:,} connected clients.")
    _notes.add(
        f"**What runs out first, working**: the one core. A call costs {c.call_ms:.3f} ms of the daemon's CPU in"
        f" Telethon alone (encryption, TCP, TL): at most {calls_per_core:,.0f} calls a second on one core, before"
        f" any of the daemon's own work per task. A connect costs more the more clients are connected ("
        + ", ".join(f"{ms:.1f} ms up to {s['connected']:,}" for ms, s in zip(step_ms, steps))
        + f"; the pool looks through every client it holds before each connect, {fig['make_room_ms']:.1f} ms at"
        f" {c.top:,}): at {steps[-1]['connected']:,} connected, at most {connects_per_core:,.0f} connects a second."
        f" A `max_connected` below the accounts in use turns calls into connects (least recently used first):"
        f" each such call then costs {slowest / c.call_ms:.0f}× a call. `telegram.max_connected` defaults to"
        f" {default_max_connected():,}.")
    out.append(Result("what runs out first holding connected clients (the shipped unit's limits, this machine's memory)",
                      f"{first[1]} at {first[0]:,} clients",
                      note=f"descriptors {by_fds:,}, memory {by_memory:,}, one core idle {by_idle_core:,}"))
    server = fig.get("server", {})
    _notes.add(f"Clients' process: Telethon {fig['telethon']} with AES by {fig['aes']}; descriptor limit"
               f" {fig['fd_limit']:,}. The MTProto server was asked, in all: "
               + ", ".join(f"{k} {v:,}" for k, v in sorted(server.get("requests", {}).items()))
               + f" over {server.get('connections', 0):,} connections.")
    if runs:
        _notes.add(node_saturation(runs, commit))
    return out


def node_saturation(runs: list[Nodes], commit: float) -> str:
    """What limited setup on the nodes, said from the figures: a node's one core, the machine, or neither."""
    cores = os.cpu_count() or 1
    parts = []
    for r in runs:
        busiest = max(r.cores[n] for n in nodes.NAMES[:r.nodes])
        parts.append(f"{r.nodes} node{'s' if r.nodes > 1 else ''}: the busiest node at {busiest:.2f} of a core,"
                     f" PostgreSQL {r.cores['PostgreSQL']:.2f}, the machine {r.cores['machine']:.2f} of {cores}"
                     f" (other work {r.cores['other']:.2f})")
    full = any(max(r.cores[n] for n in nodes.NAMES[:r.nodes]) >= 0.9 for r in runs)
    crowded = any(r.cores["machine"] >= 0.9 * cores and r.cores["other"] >= 0.5 for r in runs)
    per_task = ", ".join(f"{r.cpu_per_task_ms:.2f} ms with {r.nodes}" for r in runs)
    if full:
        why = "a node's one core was full: a second node on another core is what adds throughput"
    else:
        why = "no node was at a full core: the nodes waited, not worked"
        if commit >= 1.0:
            why += (f". Each node writes through one connection, one transaction after another, and a commit costs"
                    f" {commit:.1f} ms on this machine's disk")
    if crowded:
        why += (". The machine was full, most of it with other work than this benchmark's: the nodes' throughput"
                " here says more about that work than about a second node; run it again on a quiet machine")
    return ("**Setup with nodes, what limits it**: " + "; ".join(parts) + f". So {why}. The nodes' CPU per"
            f" completed task (all nodes together): {per_task} node(s).")


async def run() -> list[Result]:
    _notes.clear()
    started = time.monotonic()
    timings: dict[str, float] = {}
    results: list[Result] = []
    with scratch_dir("tgbc-") as work:
        media = make_media(work / "media")
        part = time.monotonic()
        sizes = await accounts_part(work, media)
        timings["accounts"] = time.monotonic() - part
        results += account_results(sizes)

        part = time.monotonic()
        (work / "clients").mkdir()
        fig = await clients_part(work / "clients")
        timings["clients"] = time.monotonic() - part
        c = client_costs(fig)
        results += client_results(fig, c)

        part = time.monotonic()
        runs, commit = await nodes_part(work, media)
        timings["nodes"] = time.monotonic() - part
        results += node_results(runs, commit)
        results += arithmetic(sizes, fig, c, runs, commit)
    one, five, _ = os.getloadavg()
    _notes.add("Time per part (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())
               + f", all {time.monotonic() - started:.0f}; load average when the run ended {one:.1f} (1 min),"
               f" {five:.1f} (5 min).")
    return results


if __name__ == "__main__":
    for res in asyncio.run(run()):
        print(res.name, res.shown_value(), res.verdict(), res.note)
    print("\n".join(_notes))
