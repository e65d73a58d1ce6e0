"""Helpers shared by the benchmarks: a daemon in a subprocess, bounded timing loops, RSS.

Everything here is bounded: every loop has a count limit and a deadline, and a
daemon started here is stopped (SIGTERM, then SIGKILL after a grace period) by
its own pid when the ``with`` block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import ROOT


def clean_env(tree: Path = ROOT) -> dict[str, str]:
    """The environment for a bench daemon: no TGFLEET_* settings leak in from the caller's shell; ``tree``'s
    code first on the path (another checkout's, to measure it beside this one)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TGFLEET_") and k != "NOTIFY_SOCKET"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tree), env.get("PYTHONPATH", "")) if p)
    return env


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size in MiB from /proc/PID/status (NaN if the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")



def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) of process ``pid`` from /proc/PID/stat; NaN if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def export_commit(rev: str, target: Path) -> Path:
    """The tree of commit ``rev`` of this repository (``git archive``) in ``target``, to run it beside this
    one; this repository's worktrees and index are not touched. One clear line when ``rev`` is unknown."""
    found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=ROOT,
                           capture_output=True, text=True, timeout=30)
    if found.returncode != 0:
        raise RuntimeError(f"no commit {rev!r} in {ROOT}")
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "--format=tar", found.stdout.strip()], cwd=ROOT,
                             capture_output=True, timeout=60, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, capture_output=True, timeout=60, check=True)
    return target


async def json_job(cmd: list[str], *, tree: Path, what: str, timeout: float) -> dict[str, Any]:
    """Run ``cmd`` (a measurement in a process of its own, ``tree``'s code first on the path) to its end; the
    JSON object on the last line of its output. Stopped by its pid after ``timeout`` seconds."""
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                stdin=asyncio.subprocess.DEVNULL, env=clean_env(tree), cwd=str(tree))
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        await stop_process(proc, 5)
        raise RuntimeError(f"{what}: no answer within {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = " | ".join(err.decode(errors="replace").strip().splitlines()[-3:])
        raise RuntimeError(f"{what}: exit {proc.returncode}: {tail}")
    answer: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return answer

@contextlib.contextmanager
def scratch_dir(prefix: str) -> Any:
    """A private temporary directory (short path: Unix socket paths are limited to 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp" if os.path.isdir("/tmp") else None))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_config(directory: Path, extra: str = "", **daemon: Any) -> Path:
    """A config file with defaults only, plus the given ``[daemon]`` keys and ``extra`` TOML sections."""
    lines = ["# written by bench: defaults only", "[daemon]", 'log_level = "warning"']
    for key, value in daemon.items():
        lines.append(f"{key} = {value!r}" if not isinstance(value, str) else f'{key} = "{value}"')
    path = directory / "config.toml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


@dataclass
class DaemonProc:
    proc: asyncio.subprocess.Process
    socket: Path
    data_dir: Path
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


@contextlib.asynccontextmanager
async def daemon_subprocess(work: Path, *, accounts: int, ready_timeout: float = 90.0,
                            stop_grace: float = 5.0, config: str = "", store: str | None = None,
                            tree: Path = ROOT) -> AsyncIterator[DaemonProc]:
    """``python -m tgdaemon run --simulate`` on a data dir under ``work``; stopped by pid on exit.
    ``store``: a ``--store`` URL (default the data dir's SQLite file); ``tree``: whose code runs."""
    from tgdaemon.control.client import ControlClient

    sock = work / "d.sock"
    data_dir = work / "data"
    cfg = write_config(work, config)
    log = work / f"daemon-{int(time.time() * 1000)}.log"
    cmd = [sys.executable, "-m", "tgdaemon", "run", "--simulate", "--config", str(cfg),
           "--accounts", str(accounts), "--data-dir", str(data_dir), "--socket", str(sock),
           "--http", "127.0.0.1:0"] + (["--store", store] if store else [])
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=out, stderr=asyncio.subprocess.STDOUT,
                                                    stdin=asyncio.subprocess.DEVNULL, env=clean_env(tree),
                                                    cwd=str(tree))
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.returncode is not None:
                raise RuntimeError(f"the bench daemon exited with {proc.returncode}: {_tail(log)}")
            if sock.exists():
                try:
                    async with ControlClient(sock, timeout=5) as client:
                        await client.status()
                    break
                except Exception:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the bench daemon was not ready within {ready_timeout:.0f} s: {_tail(log)}")
            await asyncio.sleep(0.1)
        yield DaemonProc(proc, sock, data_dir, log)
    finally:
        await stop_process(proc, stop_grace)


async def stop_process(proc: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM, wait ``grace`` seconds, then SIGKILL: by this process's own pid only."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout=grace)
    except asyncio.TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await asyncio.wait_for(proc.wait(), timeout=10)


def _tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(no output)"


@dataclass
class Timings:
    ms: list[float]
    timed_out: bool = False
    limit_ms: float = 0.0
    last: Any = None


async def timed_runs(fn: Callable[[], Awaitable[Any]], *, runs: int, budget_s: float,
                     timeout_s: float, warmup: int = 1) -> Timings:
    """Time ``fn`` up to ``runs`` times within ``budget_s``; one call over ``timeout_s`` ends the series.

    The warm-up calls are not timed (they fill SQLite's page cache and open the
    HTTP connection, as a dashboard's first listing would have done already).
    """
    out = Timings([], limit_ms=timeout_s * 1000)
    deadline = time.monotonic() + budget_s
    for i in range(warmup + runs):
        if i >= warmup and out.ms and time.monotonic() > deadline:
            break
        start = time.perf_counter()
        try:
            out.last = await asyncio.wait_for(fn(), timeout=timeout_s)
        except asyncio.TimeoutError:
            out.timed_out = True
            break
        if i >= warmup:
            out.ms.append((time.perf_counter() - start) * 1000)
    return out


@contextlib.asynccontextmanager
async def in_process(daemon: Any, *, ready_timeout: float = 60.0, stop_timeout: float = 30.0) -> AsyncIterator[Any]:
    """A ``tgdaemon.lifecycle.daemon.Daemon`` run in this process until the block ends; yields its runtime.

    A daemon that dies while starting raises its own error here, not a bare time-out."""
    task = asyncio.create_task(daemon.run(), name="bench-daemon")
    try:
        ready = asyncio.create_task(daemon.ready.wait())
        done, _ = await asyncio.wait({task, ready}, timeout=ready_timeout, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            if task in done:
                task.result()
            raise RuntimeError(f"the in-process daemon was not ready within {ready_timeout:.0f} s")
        yield daemon.runtime
    finally:
        daemon.stop()
        try:
            await asyncio.wait_for(task, stop_timeout)
        except TimeoutError:
            task.cancel()


class Notes(list[str]):
    """A benchmark's lines under its table: ``add`` puts a blank line between paragraphs."""

    def add(self, text: str) -> None:
        if self:
            self.append("")
        self.append(text)
