"""The big-fleet part of bench/control_list.py: listing 100,000 accounts while the setup scheduler runs.

A real daemon subprocess (``tgdaemon run --simulate --accounts N``, ``[setup]`` enabled with all four
media files, every other setting its default: simulator latency, queues, heartbeat) is started and left
to seed its fleet and dispatch its setup tasks; once tasks are running, the operator's commands run
against it as subprocesses (``tgdaemon accounts list``, ``--json``) and the control API is paged as the
dashboard and scripts page it (``ControlClient``). Beside the wall times: the CPU each side spent (the
CLI's from its rusage, the daemon's from /proc, less what setup burns in as long), how long ``status``
takes while nobody lists (what else holds the daemon's event loop), and, on a copy of the database in
this process, where the time of one listing goes, piece by piece, before and after issue 13. The
"before" tree (the commit this work started from, run from an archive, on a data dir of its own) is
measured beside it in the same run when ``BENCH_LIST_BEFORE`` is not 0.
"""

from __future__ import annotations

import asyncio
import io
import os
import resource
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._common import DaemonProc, clean_env, daemon_subprocess
from bench.report import ROOT, Result, median

BIG = int(os.environ.get("BENCH_LIST_BIG_ACCOUNTS", "100000"))
RUNS = int(os.environ.get("BENCH_LIST_BIG_RUNS", "5"))
BEFORE_COMMIT = os.environ.get("BENCH_LIST_BEFORE_COMMIT", "d5b49ff")
WITH_BEFORE = os.environ.get("BENCH_LIST_BEFORE", "1") != "0"
WHAT_IF_HEARTBEAT = os.environ.get("BENCH_LIST_WHAT_IF_HEARTBEAT", "1") != "0"
SLOW_HEARTBEAT = "[nodes]\nheartbeat_seconds = 30\nlease_seconds = 120\ndead_after_seconds = 60\n"
TARGET_S = 1.0
SEED_TIMEOUT_S = 900.0
CLI_TIMEOUT_S = 300.0
RICH_SAMPLE = 2_000  # rows rich prints in the what-if; its cost per row is constant (measured: 2k, 8k)


@dataclass
class Run:
    wall: float
    cli_cpu: float
    daemon_cpu: float
    ok: bool
    out_bytes: int = 0


@dataclass
class Fleet:
    label: str
    runs: dict[str, list[Run]] = field(default_factory=dict)
    api: dict[str, list[float]] = field(default_factory=dict)
    idle_status_ms: list[float] = field(default_factory=list)
    setup_rate: float = 0.0  # setup tasks finished per second while measuring
    daemon_rate: float = 0.0  # the daemon's CPU seconds per second while nobody lists (setup's)
    notes: list[str] = field(default_factory=list)


def daemon_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def setup_config(media: dict[str, str]) -> str:
    return ("[setup]\nenabled = true\n[setup.media]\n" + "".join(f'{k} = "{v}"\n' for k, v in media.items()))


async def wait_until_setup_runs(daemon: DaemonProc, accounts: int) -> dict[str, Any]:
    """Seeded, dispatched and running: the fleet is whole and setup tasks are being worked on."""
    from tgdaemon.control.client import ControlClient

    deadline = time.monotonic() + SEED_TIMEOUT_S
    async with ControlClient(daemon.socket, timeout=120) as client:
        while time.monotonic() < deadline:
            status = await client.status()
            if sum(status["accounts"].values()) >= accounts and status["setup"]["running"] > 0:
                return status
            await asyncio.sleep(1.0)
    raise RuntimeError(f"the {accounts:,}-account fleet was not seeded with setup running within {SEED_TIMEOUT_S:.0f} s")


async def run_cli(tree: Path, sock: Path, *args: str, pid: int) -> Run:
    """One ``tgdaemon ARGS`` as an operator runs it, stdout a pipe; its CPU from the children's rusage."""
    env = clean_env(tree)
    env["TGFLEET_SOCKET"] = str(sock)

    def call() -> tuple[subprocess.CompletedProcess[bytes], float, float]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "tgdaemon", *args], env=env, cwd=str(tree), capture_output=True,
                              timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return done, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    cpu0 = daemon_cpu(pid)
    try:
        done, wall, cpu = await asyncio.to_thread(call)
    except subprocess.TimeoutExpired:
        return Run(CLI_TIMEOUT_S, float("nan"), daemon_cpu(pid) - cpu0, False)
    return Run(wall, cpu, daemon_cpu(pid) - cpu0, done.returncode == 0, len(done.stdout))


async def measure(label: str, daemon: DaemonProc, tree: Path, *, table_runs: int) -> Fleet:
    """The operator's listings and the API's paging of a fleet whose setup is running."""
    from tgdaemon.control.client import ControlClient

    out = Fleet(label)
    async with ControlClient(daemon.socket, timeout=CLI_TIMEOUT_S) as client:
        before = (await client.status())["tasks"]["setup"]
        started, cpu0 = time.monotonic(), daemon_cpu(daemon.pid)
        for _ in range(50):  # nobody lists: status every 100 ms, for what else holds the event loop
            t = time.perf_counter()
            await client.status()
            out.idle_status_ms.append((time.perf_counter() - t) * 1000)
            await asyncio.sleep(0.1)
        out.daemon_rate = (daemon_cpu(daemon.pid) - cpu0) / (time.monotonic() - started)

        for name, args, runs in (("table", ("accounts", "list"), table_runs),
                                 ("json", ("accounts", "list", "--json"), max(1, min(3, RUNS)))):
            out.runs[name] = [await run_cli(tree, daemon.socket, *args, pid=daemon.pid) for _ in range(runs)]

        async def paged(page: int) -> float:
            t = time.perf_counter()
            after, n = None, 0
            for _ in range(BIG // page + 2):  # bounded
                data = await client.request("GET", "/accounts", params={"limit": page, "after": after})
                n += len(data["accounts"])
                if not (after := data["next"]):
                    break
            if n < BIG:
                raise RuntimeError(f"paging by {page} listed {n} of {BIG} accounts")
            return time.perf_counter() - t

        for page in (5000, 20000):
            out.api[f"pages of {page:,}"] = [await paged(page) for _ in range(max(1, min(3, RUNS)))]
        t = []
        for _ in range(RUNS):
            s = time.perf_counter()
            await client.request("GET", "/accounts", params={"limit": 20000})
            t.append(time.perf_counter() - s)
        out.api["one page of 20,000"] = t
        after_counts = (await client.status())["tasks"]["setup"]
        finished = sum(after_counts.get(s, 0) - before.get(s, 0) for s in ("done", "failed"))
        out.setup_rate = finished / (time.monotonic() - started)
    return out


def results(fleet: Fleet, *, target: float | None) -> list[Result]:
    tag = fleet.label
    out: list[Result] = []
    for name, label in (("table", "`tgdaemon accounts list` (a table, to a pipe)"),
                        ("json", "`tgdaemon accounts list --json`")):
        if name not in fleet.runs:
            continue
        runs = [r for r in fleet.runs[name] if r.ok]
        if not runs:
            out.append(Result(f"{tag}: {label}", CLI_TIMEOUT_S, "s", target, at_least=True,
                              note="did not finish within the limit"))
            continue
        walls = [r.wall for r in runs]
        out.append(Result(f"{tag}: {label}, end to end: median", round(median(walls), 2), "s", target,
                          note=f"{len(runs)} runs, {min(walls):.2f} to {max(walls):.2f} s; CPU medians: the CLI "
                          f"{median([r.cli_cpu for r in runs]):.2f} s, the daemon {median([r.daemon_cpu for r in runs]):.2f}"
                          f" s (in as long with nobody listing: {fleet.daemon_rate * median(walls):.2f} s); "
                          f"{runs[0].out_bytes / 2**20:.1f} MiB printed"))
    for name, times in fleet.api.items():
        out.append(Result(f"{tag}: control API, {name}: median", round(median(times), 2), "s", target,
                          note=f"{len(times)} runs, {min(times):.2f} to {max(times):.2f} s"))
    if fleet.idle_status_ms:
        ms = sorted(fleet.idle_status_ms)
        out.append(Result(f"{tag}: `status` while nobody lists (the event loop's other work): max",
                          round(ms[-1], 1), "ms", note=f"{len(ms)} calls 100 ms apart: median {median(ms):.1f} ms"))
    out.append(Result(f"{tag}: setup while measuring", round(fleet.setup_rate), "tasks/s",
                      note=f"setup tasks done or failed per second over the whole measurement; the daemon's CPU "
                      f"while nobody listed: {fleet.daemon_rate:.2f} s/s"))
    return out


# ---- where the time of one listing goes, on a copy, in this process -------------------------------------

def copy_database(db: Path, copy: Path) -> None:
    """A consistent copy of the live database (SQLite's backup API, beside the running daemon)."""
    src = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    dst = sqlite3.connect(copy)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def cpu_of(fn: Any) -> tuple[float, Any]:
    started = time.process_time()
    value = fn()
    return time.process_time() - started, value


def breakdown(copy: Path) -> tuple[list[Result], list[str]]:
    """One listing of the whole fleet, piece by piece, as CPU time in this process: the daemon's share
    before (the view's rows, the dicts, msgspec.convert, the encoding) and after (the database's JSON, one
    join), the client's decoding, and the CLI's table before (rich; timed on a sample, per row) and after."""
    import msgspec
    from rich.console import Console
    from rich.table import Table

    from tgdaemon.cli import output
    from tgdaemon.cli.table import ListingTable
    from tgdaemon.store.sqlite.accounts import ACCOUNT_JSON_SQL, VIEW_SQL
    from tgdaemon.store.views import NAME_STRIP, account_view
    from tgdaemon.wire import Account, AccountPage

    conn = sqlite3.connect(copy)
    now = time.time()
    try:
        conn.row_factory = sqlite3.Row
        old_sql, rows = cpu_of(lambda: conn.execute(f"WITH v AS ({VIEW_SQL}) SELECT *, id AS sort_value FROM v"
                                                     " ORDER BY id", {"now": now}).fetchall())
        old_views, views = cpu_of(lambda: [account_view(r) for r in rows])
        old_convert, structs = cpu_of(lambda: msgspec.convert(views, list[Account]))
        old_encode, body = cpu_of(lambda: msgspec.json.encode(AccountPage(accounts=structs, next=None)))
        conn.row_factory = None
        new_sql, raw = cpu_of(lambda: conn.execute(
            f"WITH v AS ({VIEW_SQL}) SELECT {ACCOUNT_JSON_SQL}, v.id FROM v ORDER BY id",
            {"now": now, "strip": NAME_STRIP}).fetchall())
        new_join, new_body = cpu_of(lambda: b'{"accounts":[' + b",".join(r[0] for r in raw) + b'],"next":null}')
    finally:
        conn.close()
    same = new_body == body
    decode, page = cpu_of(lambda: msgspec.json.decode(new_body, type=AccountPage))
    accounts = page.accounts

    def new_table() -> int:
        console = Console(file=io.StringIO(), highlight=False, soft_wrap=True, width=100_000)
        table = ListingTable(console, output.ACCOUNT_COLUMNS)
        for start in range(0, len(accounts), 5000):
            table.add_columns(output.account_columns(accounts[start:start + 5000]))
        table.print()
        return len(console.file.getvalue())  # type: ignore[attr-defined]

    def rich_table() -> int:
        console = Console(file=io.StringIO(), highlight=False, soft_wrap=True, width=100_000)
        table = Table(box=None, pad_edge=False)
        for name, justify in output.ACCOUNT_COLUMNS:
            table.add_column(name, justify=justify, no_wrap=True)
        for row in zip(*output.account_columns(accounts[:RICH_SAMPLE])):
            table.add_row(*row)
        console.print(table)
        return len(console.file.getvalue())  # type: ignore[attr-defined]

    new_print, _ = cpu_of(new_table)
    rich_sample, _ = cpu_of(rich_table)
    rich_all = rich_sample * len(accounts) / RICH_SAMPLE
    n = len(accounts)
    tag = f"one listing of {n:,} on a copy, CPU"

    def ms(name: str, seconds: float, note: str = "") -> Result:
        return Result(f"{tag}: {name}", round(seconds * 1000, 1), "ms", note=note)

    out = [
        ms("before, the daemon: the view's rows", old_sql),
        ms("before, the daemon: the view dicts (account_view)", old_views),
        ms("before, the daemon: msgspec.convert to wire.Account", old_convert),
        ms("before, the daemon: the JSON encoding", old_encode),
        ms("after, the daemon: the database's JSON (json_object)", new_sql,
           "on the reader's thread, without the GIL: the event loop goes on meanwhile"),
        ms("after, the daemon: joining the page's bytes", new_join, "the event loop's share"),
        ms("the client: decoding into AccountPage", decode, f"{len(new_body) / 2**20:.1f} MiB"),
        ms("before, the CLI: rich's table", rich_all,
           f"rich timed on {RICH_SAMPLE:,} rows ({rich_sample:.2f} s), its cost per row the same at any size"),
        ms("after, the CLI: ListingTable (cells and printing)", new_print),
    ]
    notes = [f"The database's JSON and the old encoding of the same {n:,} accounts are "
             + ("byte for byte the same." if same else "**not** the same (a bug: see the conformance suite).")]
    return out, notes


# ---- a tree as it was ---------------------------------------------------------------------------------------

def export_tree(commit: str, target: Path) -> Path:
    """The code of ``commit``, by git archive, without touching this repository's worktrees or index."""
    target.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=ROOT, capture_output=True,
                             timeout=60, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, capture_output=True, timeout=60, check=True)
    return target


async def big_fleet(work: Path, media: dict[str, str]) -> tuple[list[Result], list[str]]:
    """This tree's fleet (and the tree before, on a data dir of its own), measured one after the other."""
    out: list[Result] = []
    notes: list[str] = []
    config = setup_config(media)
    here = work / "big"
    here.mkdir()
    async with daemon_subprocess(here, accounts=BIG, config=config, ready_timeout=SEED_TIMEOUT_S,
                                 stop_grace=10) as daemon:
        started = time.monotonic()
        await wait_until_setup_runs(daemon, BIG)
        notes.append(f"This tree's daemon seeded {BIG:,} accounts and dispatched their setup in "
                     f"{time.monotonic() - started:.0f} s.")
        fleet = await measure("after", daemon, ROOT, table_runs=RUNS)
        out += results(fleet, target=TARGET_S)
        from tgdaemon.lifecycle.datadir import DB_NAME

        copy = work / "copy.sqlite3"
        await asyncio.to_thread(copy_database, daemon.data_dir / DB_NAME, copy)
    if WHAT_IF_HEARTBEAT:  # the same data dir again, with the node's heartbeat every 30 s instead of 2
        async with daemon_subprocess(here, accounts=BIG, config=config + SLOW_HEARTBEAT,
                                     ready_timeout=SEED_TIMEOUT_S, stop_grace=10) as daemon:
            await wait_until_setup_runs(daemon, BIG)
            slow = await measure("what if: the node heartbeat every 30 s (default 2 s)", daemon, ROOT,
                                 table_runs=max(1, min(3, RUNS)))
            out += results(slow, target=None)
        notes.append(
            "The what-if restarts the daemon on the same data dir with `[nodes] heartbeat_seconds = 30` (lease"
            " 120 s, dead after 60 s): each heartbeat reads every account this node owns (`Ownership.refresh`),"
            f" {BIG:,} of them here. `status`, asked every 100 ms while nobody lists, took at most"
            f" {max(fleet.idle_status_ms):.0f} ms (median {median(fleet.idle_status_ms):.0f}) with the default"
            f" heartbeat and at most {max(slow.idle_status_ms):.0f} ms (median {median(slow.idle_status_ms):.0f})"
            " with the slow one: what a listing waits for beyond its own work.")
    parts, more = await asyncio.to_thread(breakdown, copy)
    copy.unlink(missing_ok=True)
    out += parts
    notes += more
    if WITH_BEFORE:
        tree = export_tree(BEFORE_COMMIT, work / "before-tree")
        (work / "big-before").mkdir()
        async with daemon_subprocess(work / "big-before", accounts=BIG, config=config, tree=tree,
                                     ready_timeout=SEED_TIMEOUT_S, stop_grace=10) as daemon:
            await wait_until_setup_runs(daemon, BIG)
            # Its table takes minutes (rich): the piece-by-piece row above says how long; not run here.
            fleet = await measure(f"before ({BEFORE_COMMIT})", daemon, tree, table_runs=0)
            fleet.runs.pop("table", None)
            out += [r for r in results(fleet, target=None)]
    return out, notes
