"""The live stream carrying 5,000 deltas/s to one client, with bounded memory.

The daemon runs in this process (so the bench can publish into its hub at a
paced rate, past the event log: this measures the fan-out to the socket); the client runs in another process (``bench._watcher``) and reads
``GET /v1/watch`` over the Unix socket with ``ControlClient.watch()``. Phases,
all on one daemon and one client connection:

1. steady: 5,000 deltas/s for 10 s: rate received, end-to-end lag, RSS;
2. stalled client: 5,000 deltas/s for 12 s, the client stops reading for 6 s
   after 2 s: the server's queue for it must stop at ``stream_queue_size``,
   the client must be told to resync and get a snapshot, RSS must stay flat;
3. rate sweep: 10,000 to 160,000 deltas/s, doubling, 3 s each (stops at the
   first rate not sustained), for the highest sustainable rate.

RSS is the daemon process's (this process's) VmRSS, sampled every 100 ms. The
server-side queue length is read from the hub's subscriptions (a private
attribute: a measurement only, nothing is changed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec

from bench._common import (
    clean_env,
    in_process,
    rss_mb,
    scratch_dir,
    stop_process,
    write_config,
)
from bench.report import ROOT, Result

TITLE = "The live stream: 5,000 deltas/s to one client with bounded memory"
ACCOUNTS = 10_000
RATE = 5_000
STEADY_S = 10.0
STALL_RUN_S = 12.0
STALL_AT_S = 2.0
STALL_S = 6.0
SWEEP = (10_000, 20_000, 40_000, 80_000, 160_000)
SWEEP_S = 3.0
LAG_P99_TARGET_MS = 250.0
LIVE_AGAIN_TARGET_MS = 1000.0
RSS_SLACK_MB = 48.0

ABOUT = f"""\
The daemon (the `Daemon` class on the simulator, {ACCOUNTS:,} accounts, default `stream_queue_size`
and `stream_replay_size`) runs in the bench's process and event loop; a paced publisher calls
`runtime.hub.publish(…)` with one-delta positions of real account views from the store (about
the size of a real delta) plus a publish timestamp, past the event log (the fan-out is measured,
not the log). One client in **another process** reads `GET /v1/watch` over
the Unix socket with `ControlClient.watch()`, as the dashboard does, and measures the lag as
receive time − publish time (CLOCK_MONOTONIC, one clock for both processes). RSS is the daemon
process's VmRSS, sampled every 100 ms; the server-side queue is read from the hub's subscription.
Phases on one daemon and one connection: steady {RATE:,}/s for {STEADY_S:.0f} s; the same rate for
{STALL_RUN_S:.0f} s with the client not reading for {STALL_S:.0f} s; then {', '.join(f'{r:,}' for r in SWEEP)}/s for
{SWEEP_S:.0f} s each. Targets: every delta delivered at the full rate; lag p99 ≤ {LAG_P99_TARGET_MS:.0f} ms
(our choice: a dashboard feels live under a quarter second); a stalled client's server queue never
beyond `stream_queue_size` and a resync instead, live again (lag < 50 ms) within
{LIVE_AGAIN_TARGET_MS / 1000:.0f} s of reading again; RSS growth within what the bounded buffers can hold
(one full subscriber queue of deltas) + {RSS_SLACK_MB:.0f} MiB for snapshots and the
allocator."""

_notes: list[str] = []


def notes() -> list[str]:
    return list(_notes)


@dataclass
class Sampler:
    """RSS and the largest server-side subscriber queue, every 100 ms, per phase."""

    hub: Any
    phase: str = "idle"
    rss: dict[str, list[float]] = field(default_factory=dict)
    queue: dict[str, int] = field(default_factory=dict)
    lagged: dict[str, bool] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, max_seconds: float) -> None:
        deadline = time.monotonic() + max_seconds
        while not self.stop.is_set() and time.monotonic() < deadline:
            self.sample()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 0.1)

    def sample(self) -> None:
        self.rss.setdefault(self.phase, []).append(rss_mb())
        for sub in list(getattr(self.hub, "_subs", ())):
            depth = getattr(sub, "queued", 0)
            self.queue[self.phase] = max(self.queue.get(self.phase, 0), depth)
            if getattr(sub, "lagged", False):
                self.lagged[self.phase] = True


def publish(hub: Any, data: dict[str, Any]) -> None:
    """One delta as the next position of the hub, as its log follower would publish it."""
    from tgdaemon.stream import Position

    seq = hub.seq + 1
    hub.publish(Position(seq, [msgspec.json.encode({"type": "delta", "seq": seq, "prev": seq - 1, "kind": "account",
                                                    "op": "upsert", "data": data})]))


class Publisher:
    def __init__(self, hub: Any, views: list[dict[str, Any]]) -> None:
        self.hub = hub
        self.views = views
        self.n = 0

    def one(self, phase: str) -> None:
        view = self.views[self.n % len(self.views)]
        self.n += 1
        publish(self.hub, {**view, "bench_phase": phase, "bench_t": time.monotonic()})

    async def paced(self, phase: str, rate: int, seconds: float,
                    at: tuple[float, dict[str, Any]] | None = None) -> tuple[int, float]:
        """Publish ``rate``/s for ``seconds`` (bounded: at most rate × seconds, at most 2 × seconds long)."""
        total = int(rate * seconds)
        sent = 0
        start = time.monotonic()
        deadline = start + 2 * seconds
        while sent < total:
            now = time.monotonic()
            if now > deadline:
                break
            if at is not None and now - start >= at[0]:
                publish(self.hub, at[1])
                at = None
            due = min(total, int((now - start) * rate)) - sent
            for _ in range(due):
                self.one(phase)
            sent += due
            await asyncio.sleep(0.002)
        return sent, time.monotonic() - start


async def run() -> list[Result]:
    from tgdaemon import config
    from tgdaemon.gateway.simulator import Simulator
    from tgdaemon.lifecycle.daemon import Daemon

    _notes.clear()
    with scratch_dir("tgbench-stream-") as work:
        cfg = config.load(write_config(work), env={}, overrides={
            "daemon": {"data_dir": str(work / "data"), "socket": str(work / "d.sock"), "http": "127.0.0.1:0",
                       "log_level": "warning"},
            "simulator": {"accounts": ACCOUNTS},
        })
        daemon = Daemon(cfg, Simulator(cfg.simulator), install_signal_handlers=False)
        async with in_process(daemon, ready_timeout=90, stop_timeout=20):
            return await _measure(daemon, cfg)


async def _measure(daemon: Any, cfg: Any) -> list[Result]:
    rt = daemon.runtime
    hub = rt.hub
    views, _ = await rt.store.list_accounts(limit=500)
    publisher = Publisher(hub, views)
    sample = msgspec.json.encode({"type": "delta", "seq": 1, "prev": 0, "kind": "account", "op": "upsert",
                                  "data": {**views[0], "bench_phase": "steady", "bench_t": 1.0}})
    queue_size = cfg.daemon.stream_queue_size

    rss_idle = rss_mb()
    watcher = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench._watcher", str(cfg.socket_path()), "--max-seconds", "150",
        stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL, env=clean_env(), cwd=str(ROOT))
    sampler = Sampler(hub)
    sampling = asyncio.create_task(sampler.run(max_seconds=170))
    results: list[Result] = []
    try:
        hello = await _line(watcher, 60)
        if "ready" not in hello:
            raise RuntimeError(f"the stream client did not start: {hello}")
        results.append(Result(f"connect + first snapshot ({hello['accounts']:,} accounts)",
                              round(hello["snapshot_ms"]), "ms", note="as the client sees it, incl. decoding"))
        await asyncio.sleep(0.5)
        rss_before = rss_mb()

        # 1. steady
        sampler.phase = "steady"
        sent, took = await publisher.paced("steady", RATE, STEADY_S)
        steady = await _end_phase(hub, watcher, "steady")
        rss_after_steady = rss_mb()
        results += [
            Result(f"steady: published (paced at {RATE:,}/s for {STEADY_S:.0f} s)", round(sent / took), "deltas/s",
                   note=f"{sent:,} deltas in {took:.2f} s"),
            Result("steady: received by the client", round(steady["rate"]), "deltas/s", RATE * 0.99,
                   lower_is_better=False, note=f"{steady['received']:,} of {sent:,} received over "
                   f"{steady['span_s']:.2f} s; target {RATE:,}/s with 1 % pacing tolerance"),
            Result("steady: deltas lost", sent - steady["received"], "", 0,
                   note=f"resyncs: {steady['resyncs']}"),
            Result("steady: lag p50", round(steady["lag_p50_ms"], 1), "ms"),
            Result("steady: lag p99", round(steady["lag_p99_ms"], 1), "ms", LAG_P99_TARGET_MS,
                   note=f"max {steady['lag_max_ms']:.0f} ms"),
            Result("steady: largest server queue for the client", sampler.queue.get("steady", 0), "deltas"),
            Result("steady: daemon RSS before → after", f"{rss_before:.0f} → {rss_after_steady:.0f} MiB"),
        ]

        # 2. stalled client
        sampler.phase = "stall"
        stall_ctl = {"bench_ctl": "stall", "seconds": STALL_S}
        sent, took = await publisher.paced("stall", RATE, STALL_RUN_S, at=(STALL_AT_S, stall_ctl))
        stall = await _end_phase(hub, watcher, "stall")
        rss_after_stall = rss_mb()
        results += [
            Result(f"stalled client: largest server queue (client not reading for {STALL_S:.0f} s)",
                   sampler.queue.get("stall", 0), "deltas", queue_size,
                   note=f"`stream_queue_size` = {queue_size:,}; the queue is dropped when it is full"),
            Result("stalled client: resyncs sent (snapshot after the stall)", stall["resyncs"], "", 1,
                   lower_is_better=False, note=f"snapshots received after the first: {stall['snapshots']}; "
                   f"{stall['received']:,} of {sent:,} deltas delivered, the rest replaced by the snapshot"),
            _live_again(stall),
            Result("stalled client: daemon RSS before → after", f"{rss_after_steady:.0f} → {rss_after_stall:.0f} MiB",
                   note=f"peak {max(sampler.rss.get('stall', [rss_after_stall])):.0f} MiB"),
        ]

        # 3. rate sweep
        sustained = RATE if steady["resyncs"] == 0 and steady["received"] >= 0.999 * sent else 0
        sweep_rows = []
        for rate in SWEEP:
            phase = f"sweep{rate}"
            sampler.phase = phase
            await asyncio.sleep(0.5)
            sent, took = await publisher.paced(phase, rate, SWEEP_S)
            got = await _end_phase(hub, watcher, phase)
            ok = (got["resyncs"] == 0 and got["received"] >= 0.999 * sent and sent / took >= 0.97 * rate
                  and got["lag_p99_ms"] <= 1000)
            sweep_rows.append(f"| {rate:,}/s | {sent / took:,.0f}/s | {got['rate']:,.0f}/s | "
                              f"{got['received']:,} of {sent:,} | {got['resyncs']} | {got['lag_p50_ms']:.0f} ms | "
                              f"{got['lag_p99_ms']:.0f} ms | {sampler.queue.get(phase, 0):,} | "
                              f"{'yes' if ok else 'no'} |")
            if not ok:
                break
            sustained = rate
        rss_end = rss_mb()
        peak = max(max(v) for v in sampler.rss.values())
        bound = queue_size * len(sample) / 2**20
        results += [
            Result("highest rate sustained (of those tried)", sustained, "deltas/s", RATE, lower_is_better=False,
                   note=f"tried {', '.join(f'{r:,}' for r in SWEEP)}/s for {SWEEP_S:.0f} s each; sustained = "
                   "all delivered, no resync, publisher kept pace, lag p99 ≤ 1 s"),
            Result("daemon RSS growth, idle → peak over all phases", round(peak - rss_idle, 1), "MiB",
                   round(bound + RSS_SLACK_MB, 1),
                   note=f"idle {rss_idle:.0f} MiB, peak {peak:.0f} MiB, at the end {rss_end:.0f} MiB after "
                   f"{publisher.n:,} deltas; bound = {queue_size:,} queue × "
                   f"{len(sample)} B + {RSS_SLACK_MB:.0f} MiB"),
            Result("daemon RSS growth, end of steady phase → end of all phases",
                   round(rss_end - rss_after_steady, 1), "MiB",
                   note="later phases publish "
                   f"{publisher.n - int(RATE * STEADY_S):,} more deltas"),
        ]
        _notes.append("Rate sweep (one client, same connection):")
        _notes.append("")
        _notes.append("| target rate | published | received | delivered | resyncs | lag p50 | lag p99 "
                      "| largest server queue | sustained |")
        _notes.append("|---|---|---|---|---|---|---|---|---|")
        _notes.extend(sweep_rows)
        _notes.append("")
        _notes.append(f"One encoded delta is {len(sample)} bytes. RSS by phase (min → max MiB): " + "; ".join(
            f"{name} {min(v):.0f} → {max(v):.0f}" for name, v in sampler.rss.items() if v) + ".")
    finally:
        sampler.stop.set()
        await asyncio.wait_for(sampling, 5)
        await stop_process(watcher, 3)
    return results


def _live_again(stall: dict[str, Any]) -> Result:
    name = "stalled client: live again after it resumed reading"
    note = (f"resume → resync → snapshot → first delta with lag < 50 ms; lag p99 of the "
            f"{stall['after_resync']:,} deltas after the resync {stall['after_resync_lag_p99_ms']:.0f} ms")
    live = stall["live_again_ms"]
    if live != live:  # NaN: never live again before the phase ended
        return Result(name, (STALL_RUN_S - STALL_AT_S - STALL_S) * 1000, "ms", LIVE_AGAIN_TARGET_MS, at_least=True,
                      note=note + "; not live again before the phase ended")
    return Result(name, round(live), "ms", LIVE_AGAIN_TARGET_MS, note=note)


async def _line(proc: asyncio.subprocess.Process, timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    raw = await asyncio.wait_for(proc.stdout.readline(), timeout)
    if not raw:
        raise RuntimeError(f"the stream client exited (code {proc.returncode})")
    return json.loads(raw)


async def _end_phase(hub: Any, watcher: asyncio.subprocess.Process, phase: str) -> dict[str, Any]:
    """Tell the client the phase is over and read its figures (the marker is re-sent if a resync ate it)."""
    for _ in range(6):
        publish(hub, {"bench_ctl": "end", "phase": phase})
        try:
            got = await _line(watcher, 5)
        except asyncio.TimeoutError:
            continue
        if got.get("phase") == phase:
            return got
        if "error" in got:
            raise RuntimeError(f"the stream client failed: {got['error']}")
    raise RuntimeError(f"the stream client did not report phase {phase} within 30 s")


if __name__ == "__main__":
    for r in asyncio.run(run()):
        print(r.name, r.shown_value(), r.verdict())
