"""The setup scheduler of bench/hotpath.py, in a process of its own, on the code of one tree.

Run by path, never imported: ``python bench/_hotpath_worker.py TREE scheduler JSON-ARGS``. ``TREE`` is the
checkout whose ``tgdaemon`` is measured (this worktree, or the code before issue 13 exported to a scratch
dir), put first on ``sys.path``. The fixture is bench/_stores_worker.py's (``make_config``,
``open_store``, ``seed_accounts``: the same code for both trees and both drivers), loaded from this
file's directory; what differs from its ``scheduler`` job is the simulator's latency (its default here,
not 0) and what is sampled: how many tasks of each queue run at once, to show the media queue is not
the limit. The result is one JSON line on stdout. Every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
if __name__ == "__main__":  # the script's own directory (bench/) must not shadow anything
    sys.path.pop(0)
    sys.path.insert(0, sys.argv[1])

SAMPLE_S = 1.0


def stores_worker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_stores_worker", HERE / "_stores_worker.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def scheduler(work: Path, url: str, media: dict[str, str], fast: int, media_q: int, window: float,
                    pg_pid: int) -> dict[str, Any]:
    from tgdaemon.config import SimulatorConfig
    from tgdaemon.gateway.simulator import Simulator
    from tgdaemon.lifecycle.daemon import Daemon
    from tgdaemon.setup.tasks import required_tasks

    sw = stores_worker()
    default = SimulatorConfig()
    cfg = sw.make_config(work, url, {
        "simulator": {"latency_min_ms": default.latency_min_ms, "latency_max_ms": default.latency_max_ms},
        "setup": {"enabled": True, "dispatch_interval_seconds": 3600.0, "media": media,
                  "queues": {"fast_concurrency": fast, "media_concurrency": media_q},
                  "profile": {"first_name": "Bench", "last_name": "Fleet"}}})
    store = await sw.open_store(url)
    try:
        await sw.seed_accounts(store, Simulator(cfg.simulator))
        total, _ = await store.dispatch_setup(required_tasks(cfg.setup))
    finally:
        await store.close()
    daemon = Daemon(cfg, Simulator(cfg.simulator), install_signal_handlers=False)
    task = asyncio.create_task(daemon.run(), name="bench-daemon")
    samples: list[tuple[float, int]] = []
    running: dict[str, list[int]] = {"fast": [], "media": []}
    try:
        ready = asyncio.create_task(daemon.ready.wait())
        done, _ = await asyncio.wait({task, ready}, timeout=120, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            if task in done:
                task.result()
            raise RuntimeError("the in-process daemon was not ready within 120 s")
        rt = daemon.runtime
        assert rt is not None
        store = rt.store
        waited = time.monotonic()
        while rt.setup.running() == 0 and time.monotonic() - waited < 30:  # the clock starts with the first task
            await asyncio.sleep(0.005)

        async def completed() -> tuple[int, int]:
            setup = (await store.task_counts())["setup"]
            return setup.get("done", 0) + setup.get("failed", 0), setup.get("failed", 0)

        base, _ = await completed()
        cpu0, pg0 = time.process_time(), sw.server_cpu(pg_pid)
        t0 = time.monotonic()
        samples.append((0.0, 0))
        finished, failed = False, 0
        for _ in range(int(window / SAMPLE_S) + 2):
            await asyncio.sleep(SAMPLE_S)
            for queue, jobs in rt.setup._running.items():  # a measurement only: how full each queue is
                running[queue].append(len(jobs))
            count, failed = await completed()
            samples.append((time.monotonic() - t0, count - base))
            if count >= total:
                finished = True
                break
            if samples[-1][0] >= window:
                break
        cpu, pg = time.process_time() - cpu0, sw.server_cpu(pg_pid) - pg0
    finally:
        daemon.stop()
        try:
            await asyncio.wait_for(task, 30)
        except TimeoutError:
            task.cancel()
    seconds, count = samples[-1]
    return {"seconds": seconds, "completed": count, "failed": failed, "total": total, "finished": finished,
            "cpu": cpu, "server_cpu": pg, "samples": samples, "running": running,
            "latency_ms": [default.latency_min_ms, default.latency_max_ms]}


JOBS = {"scheduler": scheduler}


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    job, args = sys.argv[2], json.loads(sys.argv[3])
    if "work" in args:
        args["work"] = Path(args["work"])
    sys.stdout.write(json.dumps(asyncio.run(JOBS[job](**args))) + "\n")


if __name__ == "__main__":
    main()
