"""What ``store.synchronous = "full"`` costs: pull+report and the setup scheduler, NORMAL and FULL side by side.

In WAL mode NORMAL fsyncs only at checkpoints, so the last commits before a
power loss can vanish although their answers were sent; FULL fsyncs the WAL at
every COMMIT. Group commit (several reports or setup outcomes per
transaction) is what keeps that one fsync per transaction affordable, so the
figures are the ones where it matters: many small writes.

1. **Pull+report** against a real ``tgdaemon run --simulate`` subprocess per
   mode, exactly as in ``bench/provider_pull.py`` (its helpers are used):
   batched by 100 (4 clients), and unbatched (16 clients, pull 1, report 1).
2. **Setup scheduler** in this process, as in ``bench/setup_pipeline.py``: the
   real ``Daemon`` on the simulator (latency 0) with the four fast setup tasks
   dispatched for every account, completions counted over a fixed window.

The modes alternate (NORMAL, FULL, NORMAL, FULL) so that drift in the
machine's load falls on both alike; each figure is the median of its passes.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from bench import provider_pull as pp
from bench import setup_pipeline as sp
from bench._common import daemon_subprocess, in_process, scratch_dir
from bench.report import Result, median

TITLE = "Durability: synchronous NORMAL vs FULL (pull+report, setup scheduler)"
MODES = ("normal", "full")
PASSES = 3
SETUP_ACCOUNTS = int(os.environ.get("BENCH_DURABILITY_SETUP_ACCOUNTS", "10000"))
SETUP_WINDOW_S = 60.0
SAMPLE_S = 0.25
FSYNC_SAMPLES = 200

ABOUT = f"""\
Issue 10 item 7. The same work with `[store] synchronous = "normal"` and `"full"` (the default), the
modes alternating ({PASSES} passes each, medians shown), on the machine's ordinary disk (the scratch
directory is under /tmp, on the root file system; fsync there is real). **Pull+report**: as in the
pull benchmark, a `tgdaemon run --simulate` subprocess with {pp.ACCOUNTS:,} accounts assigned to one
provider and {pp.ACCOUNTS:,} inspected `channel_stats` quotas; per pass one backlog of {pp.ACCOUNTS:,}
tasks drained by {pp.BATCH_CLIENTS} clients pulling {pp.BATCH} and reporting them in one request, then
{pp.SINGLE_CLIENTS} clients pulling 1 and reporting it for {pp.UNBATCHED_WINDOW_S:.0f} s (round trips/s).
**Setup scheduler**: the real `Daemon` in this process on the simulator (latency 0, no faults),
{SETUP_ACCOUNTS:,} accounts with the 4 fast setup tasks each dispatched beforehand, fast concurrency 64;
throughput = the {4 * SETUP_ACCOUNTS:,} tasks ÷ the time from the first task starting to the last one
finishing (completions counted in the database every {SAMPLE_S} s, the last interval interpolated;
bounded by a {SETUP_WINDOW_S:.0f} s window).
Also measured before each pass: the latency of one 4 KiB write + fsync in the scratch directory
(median of {FSYNC_SAMPLES}), the price FULL pays per transaction; the cost of FULL follows it."""

_notes: list[str] = []


def notes() -> list[str]:
    return list(_notes)


def fsync_ms(directory: Path) -> float:
    """Median milliseconds of one 4 KiB append + fsync: what a FULL commit adds to a transaction."""
    samples = []
    with tempfile.NamedTemporaryFile(dir=directory) as f:
        for _ in range(FSYNC_SAMPLES):
            started = time.perf_counter()
            os.write(f.fileno(), b"\0" * 4096)
            os.fsync(f.fileno())
            samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def pull_report(mode: str) -> tuple[float, float, float]:
    """(batched tasks/s, unbatched round trips/s, unbatched tasks/s) against a daemon in ``mode``."""
    from tgdaemon.control.client import ControlClient

    config = pp.DAEMON_CONFIG + f'\n[store]\nsynchronous = "{mode}"\n'
    with scratch_dir("tgfbd") as work:
        async with daemon_subprocess(work, accounts=pp.ACCOUNTS, config=config) as daemon:
            async with ControlClient(daemon.socket, timeout=60) as control:
                status = await control.status()
                if status.get("synchronous") != mode:
                    raise RuntimeError(f"the daemon runs synchronous={status.get('synchronous')}, not {mode}")
                token = (await control.request("POST", "/providers", body={"name": "bench"}))["token"]
                ids = [a["id"] for a in await control.all_accounts() if not a["is_probe"]]
                await control.request("POST", "/accounts/assign", body={"ids": ids, "executor": "bench"})
                pp.seed_quotas(daemon.data_dir / "tgfleet.sqlite3")
                headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
                async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=64)) as http:
                    base = f"http://{status['http']}"
                    batchers = [pp.Provider(http, base) for _ in range(pp.BATCH_CLIENTS)]
                    await pp.wait_backlog(batchers[0], control, len(ids))
                    took, applied = await pp.drain(batchers)
                    await pp.wait_backlog(batchers[0], control, len(ids))
                    singles = [pp.Provider(http, base) for _ in range(pp.SINGLE_CLIENTS)]
                    u_took, round_trips, u_applied = await pp.unbatched(singles)
    return applied / took, round_trips / u_took, u_applied / u_took


async def setup_rate(mode: str) -> tuple[float, int]:
    """(completed setup tasks/s, tasks completed) in the window, the daemon in ``mode``."""
    import msgspec

    from tgdaemon.config import StoreConfig
    from tgdaemon.gateway.simulator import Simulator
    from tgdaemon.lifecycle.daemon import Daemon

    with scratch_dir("tgfbs") as work:
        cfg = sp.make_config(work, None, fast=64, media_q=16, enabled=True, accounts=SETUP_ACCOUNTS)
        cfg = msgspec.structs.replace(cfg, store=StoreConfig(synchronous=mode))  # type: ignore[arg-type]
        await sp.prepare_data_dir(work, cfg)
        daemon = Daemon(cfg, Simulator(cfg.simulator), install_signal_handlers=False)
        async with in_process(daemon) as rt:
            assert rt is not None
            if rt.store.synchronous != mode:
                raise RuntimeError(f"the store runs synchronous={rt.store.synchronous}, not {mode}")
            for _ in range(6000):  # the clock starts when the first task has (bounded: 30 s)
                if rt.setup.running():
                    break
                await asyncio.sleep(0.005)
            count = "SELECT COUNT(*) FROM account_tasks WHERE status IN ('done', 'failed')"
            total = list(await rt.store.read("SELECT COUNT(*) FROM account_tasks"))[0][0]
            started = time.monotonic()
            base = list(await rt.store.read(count))[0][0]
            last = (0.0, base)
            for _ in range(int(SETUP_WINDOW_S / SAMPLE_S)):
                await asyncio.sleep(SAMPLE_S)
                now = (time.monotonic() - started, list(await rt.store.read(count))[0][0])
                if now[1] >= total:  # finished inside this interval: interpolate where
                    seconds = last[0] + (total - last[1]) / max(now[1] - last[1], 1) * (now[0] - last[0])
                    return (total - base) / seconds, total - base
                last = now
            return (last[1] - base) / last[0], last[1] - base


async def run() -> list[Result]:
    _notes.clear()
    figures: dict[str, dict[str, list[float]]] = {m: {"batched": [], "rt": [], "single": [], "setup": []}
                                                   for m in MODES}
    fsyncs: list[float] = []
    for _ in range(PASSES):
        for mode in MODES:
            with scratch_dir("tgfbf") as work:  # the disk's own pace varies with its other users: each pass
                fsyncs.append(fsync_ms(work))
            batched, rt, single = await pull_report(mode)
            rate, _ = await setup_rate(mode)
            f = figures[mode]
            f["batched"].append(batched)
            f["rt"].append(rt)
            f["single"].append(single)
            f["setup"].append(rate)
    def each(values: list[float]) -> str:
        return ", ".join(f"{v:,.0f}" for v in values)

    results: list[Result] = []
    rows = [("batched", f"pull+report, batched by {pp.BATCH} ({pp.BATCH_CLIENTS} clients)", "tasks/s"),
            ("rt", f"pull+report, unbatched ({pp.SINGLE_CLIENTS} clients)", "round trips/s"),
            ("setup", f"setup scheduler, 4 fast tasks, {SETUP_ACCOUNTS:,} accounts, fast 64", "tasks/s")]
    for key, label, unit in rows:
        normal, full = median(figures["normal"][key]), median(figures["full"][key])
        for mode, value in (("normal", normal), ("full", full)):
            note = f"passes: {each(figures[mode][key])}"
            if key == "rt":
                note += f"; tasks/s {each(figures[mode]['single'])}"
            if mode == "full":
                note += f"; FULL/NORMAL {full / normal:.2f}" if normal else ""
            results.append(Result(f"{label}, {mode.upper()}", round(value), unit, lower_is_better=False, note=note))
    results.append(Result("one 4 KiB write + fsync in the scratch directory (median of the passes' medians)",
                          round(median(fsyncs), 2), "ms", note=f"before each pass: {', '.join(f'{v:.2f}' for v in fsyncs)} ms"))
    _notes.append("FULL adds one fsync of the WAL per COMMIT; group commit shares it among every report or "
                  "setup outcome that arrived while the previous transaction was being written, which is why the "
                  "batched and grouped paths lose little and the unbatched one loses most.")
    return results
