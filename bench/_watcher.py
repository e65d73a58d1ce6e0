"""The stream benchmark's client, run in its own process: ``python -m bench._watcher SOCKET``.

It reads the daemon's live stream with ``tgdaemon.control.client.ControlClient.watch()``,
as the dashboard does, and counts the bench's deltas per phase. The bench
steers it with control deltas on the same stream (``data.bench_ctl``):

* ``{"bench_ctl": "stall", "seconds": S}``: stop reading for S seconds (the
  loop does not ask for the next message, so the socket backs up);
* ``{"bench_ctl": "end", "phase": P}``: print phase P's figures as one JSON line.

Bench deltas carry ``bench_phase`` and ``bench_t`` (``time.monotonic()`` at
publish; CLOCK_MONOTONIC is one clock for every process on the machine), so
the lag is receive time minus ``bench_t``. The first line printed is
``{"ready": …}`` once the first snapshot arrived. The process ends by itself
after ``--max-seconds`` whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from bench.report import percentile

LIVE_S = 0.05  # a delta received within 50 ms of its publication: the client is live again


class Phase:
    def __init__(self) -> None:
        self.count = 0
        self.lags: list[float] = []
        self.first = 0.0
        self.last = 0.0
        self.resyncs = 0
        self.snapshots = 0
        self.after_resync: list[float] = []
        self.stalled_s = 0.0
        self.seen_resync = False
        self.resumed_at = 0.0
        self.live_again_ms = float("nan")

    def report(self, name: str) -> dict[str, Any]:
        span = self.last - self.first
        lags_ms = [x * 1000 for x in self.lags]
        after_ms = [x * 1000 for x in self.after_resync]
        return {
            "phase": name, "received": self.count, "span_s": span,
            "rate": self.count / span if span > 0 else 0.0,
            "lag_p50_ms": percentile(lags_ms, 50), "lag_p99_ms": percentile(lags_ms, 99),
            "lag_max_ms": max(lags_ms, default=float("nan")),
            "resyncs": self.resyncs, "snapshots": self.snapshots, "stalled_s": self.stalled_s,
            "after_resync": len(after_ms), "after_resync_lag_p99_ms": percentile(after_ms, 99),
            "live_again_ms": self.live_again_ms,
        }


async def consume(socket: str, max_seconds: float) -> None:
    from tgdaemon.control.client import ControlClient

    deadline = time.monotonic() + max_seconds
    phases: dict[str, Phase] = {}
    reported: set[str] = set()
    current: Phase | None = None
    ready = False
    async with ControlClient(socket, timeout=max_seconds) as client:
        connected = time.monotonic()
        async for msg in client.watch():
            now = time.monotonic()
            if now > deadline:
                break
            kind = msg.get("type")
            if kind == "snapshot":
                if not ready:
                    ready = True
                    emit({"ready": True, "accounts": len(msg.get("accounts", [])),
                          "snapshot_ms": (now - connected) * 1000, "seq": msg.get("seq")})
                elif current is not None:
                    current.snapshots += 1
                continue
            if kind == "resync":
                if current is not None:
                    current.resyncs += 1
                    current.seen_resync = True
                continue
            if kind != "delta":
                continue
            data = msg.get("data") or {}
            ctl = data.get("bench_ctl")
            if ctl == "stall":
                seconds = min(float(data.get("seconds", 0)), 30.0)
                if current is not None:
                    current.stalled_s += seconds
                await asyncio.sleep(seconds)  # nothing reads the socket meanwhile
                if current is not None:
                    current.resumed_at = time.monotonic()
                continue
            if ctl == "end":
                name = str(data.get("phase"))
                if name not in reported:
                    reported.add(name)
                    emit(phases.get(name, Phase()).report(name))
                current = None
                continue
            name = data.get("bench_phase")
            if name is None or name in reported:
                continue
            phase = phases.get(name)
            if phase is None:
                phase = phases[name] = current = Phase()
                phase.first = now
            phase.count += 1
            phase.last = now
            lag = now - float(data["bench_t"])
            phase.lags.append(lag)
            if phase.seen_resync:
                phase.after_resync.append(lag)
                if lag < LIVE_S and phase.resumed_at and phase.live_again_ms != phase.live_again_ms:
                    phase.live_again_ms = (now - phase.resumed_at) * 1000


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("socket")
    parser.add_argument("--max-seconds", type=float, default=150.0)
    args = parser.parse_args()
    try:
        asyncio.run(asyncio.wait_for(consume(args.socket, args.max_seconds), timeout=args.max_seconds + 5))
    except (asyncio.TimeoutError, KeyboardInterrupt):
        pass
    except Exception as exc:  # the daemon stopped: say so on stdout, where the bench reads
        emit({"error": f"{type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    main()
