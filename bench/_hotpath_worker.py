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
    running: dict[str, list[int]] = {"fast": [], "media": []}

    def sample(rt: Any) -> None:
        for queue, jobs in rt.setup._running.items():  # a measurement only: how full each queue is
            running[queue].append(len(jobs))

    out = await sw.setup_window(cfg, total, window, pg_pid, sample_s=SAMPLE_S, on_sample=sample)
    return out | {"running": running, "latency_ms": [default.latency_min_ms, default.latency_max_ms]}


JOBS = {"scheduler": scheduler}


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    job, args = sys.argv[2], json.loads(sys.argv[3])
    if "work" in args:
        args["work"] = Path(args["work"])
    sys.stdout.write(json.dumps(asyncio.run(JOBS[job](**args))) + "\n")


if __name__ == "__main__":
    main()
