"""Real ``tgdaemon`` subprocesses for end-to-end tests, and the real CLI as a subprocess.

Everything here is bounded: a daemon that does not open its socket within
``READY_TIMEOUT`` seconds, or exits early, fails the test with its log. A
``Fleet`` remembers every daemon it started and kills the survivors on
``close()`` (call it from fixture teardown).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tgdaemon.lifecycle.daemon import socket_answers

READY_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
CLI_TIMEOUT = 30.0
# Sets RLIMIT_NOFILE (argv 1, 2: soft, hard) as a unit's LimitNOFILE would, then becomes the daemon
# (same pid). Not preexec_fn, which can deadlock when the test process has threads.
NOFILE_LAUNCHER = ("import os, resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]),"
                   " int(sys.argv[2]))); os.execv(sys.executable, [sys.executable, *sys.argv[3:]])")


def isolated_env(root: Path, **extra: str) -> dict[str, str]:
    """The test's environment minus anything that could point at a real daemon, config or systemd."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TGFLEET_", "NOTIFY_SOCKET", "WATCHDOG_", "LISTEN_"))
           and k not in ("INVOCATION_ID", "STATE_DIRECTORY", "RUNTIME_DIRECTORY", "COLUMNS", "LINES")}
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        path = root / "xdg" / name.lower()
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        env[name] = str(path)
    env["PYTHONUNBUFFERED"] = "1"
    env["TGFLEET_SIMULATOR__LATENCY_MIN_MS"] = "0"
    env["TGFLEET_SIMULATOR__LATENCY_MAX_MS"] = "0"
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str], timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """``python -m tgdaemon ARGS``, as an operator would run it."""
    return subprocess.run([sys.executable, "-m", "tgdaemon", *args], check=False, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def run_cli_many(calls: Sequence[Sequence[str]], *, env: dict[str, str] | Sequence[dict[str, str]],
                 timeout: float = CLI_TIMEOUT) -> list[subprocess.CompletedProcess[str]]:
    """Several independent CLI commands at once (each is a full interpreter start: this saves seconds).

    ``env`` is one environment for all, or one per call.
    """
    envs = [env] * len(calls) if isinstance(env, dict) else list(env)
    assert len(envs) == len(calls)
    procs = [(list(args), subprocess.Popen([sys.executable, "-m", "tgdaemon", *args], env=call_env, text=True,
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           stdin=subprocess.DEVNULL))
             for args, call_env in zip(calls, envs)]
    results = []
    try:
        deadline = time.monotonic() + timeout
        for args, proc in procs:
            out, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            results.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


class DaemonProc:
    """One ``tgdaemon run --simulate`` process."""

    def __init__(self, fleet: Fleet, *, data_dir: Path, socket_path: Path, accounts: int | None, config: Path,
                 env: dict[str, str], extra_args: Sequence[str], name: str,
                 nofile: tuple[int, int] | None = None, store: str | None = None) -> None:
        self.fleet = fleet
        self.data_dir = data_dir
        self.socket_path = socket_path
        self.log_path = fleet.root / f"{name}.log"
        self.cmd = [sys.executable, "-m", "tgdaemon", "run", "--simulate",
                    *(("--accounts", str(accounts)) if accounts is not None else ()),
                    "--data-dir", str(data_dir), "--socket", str(socket_path), "--http", "127.0.0.1:0",
                    *(("--store", store) if store is not None else ()),
                    "--config", str(config), *extra_args]
        with self.log_path.open("wb") as log:
            argv = self.cmd if nofile is None else [sys.executable, "-c", NOFILE_LAUNCHER, *map(str, nofile),
                                                    *self.cmd[1:]]
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"

    def _fail(self, why: str) -> None:
        pytest.fail(f"{why}\n--- daemon command: {' '.join(self.cmd)}\n--- daemon log:\n{self.log()}",
                    pytrace=False)

    def _ready_step(self, deadline: float) -> bool:
        if self.proc.poll() is not None:
            self._fail(f"tgdaemon exited with code {self.proc.returncode} before its socket was ready")
        if self.socket_path.exists() and socket_answers(self.socket_path):
            return True
        if time.monotonic() > deadline:
            self._fail(f"tgdaemon did not answer on {self.socket_path} within {READY_TIMEOUT:.0f} s")
        return False

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> DaemonProc:
        deadline = time.monotonic() + timeout
        while not self._ready_step(deadline):
            time.sleep(0.05)
        return self

    async def await_ready(self, timeout: float = READY_TIMEOUT) -> DaemonProc:
        """Like ``wait_ready`` but without blocking the event loop (for tests that run an app meanwhile)."""
        deadline = time.monotonic() + timeout
        while not self._ready_step(deadline):
            await asyncio.sleep(0.05)
        return self

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self._fail(f"tgdaemon did not exit within {timeout:.0f} s")
            raise AssertionError("unreachable")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Send ``sig`` and wait (bounded) for the exit; returns the exit code."""
        self.proc.send_signal(sig)
        return self.wait_exit(timeout)

    async def astop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        self.proc.send_signal(sig)
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.kill()
                self._fail(f"tgdaemon did not exit within {timeout:.0f} s of {sig.name}")
            await asyncio.sleep(0.05)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


class Fleet:
    """A short-pathed temp dir, an empty config, an isolated environment, and the daemons started in it.

    ``store``: the ``--store`` URL every daemon of the fleet gets (a fixture's fresh PostgreSQL database,
    ``daemon_store`` in conftest.py); None is the data dir's SQLite file."""

    def __init__(self, store: str | None = None) -> None:
        self.store = store
        # AF_UNIX paths are limited to 108 bytes: keep everything under a short /tmp dir.
        self.root = Path(tempfile.mkdtemp(prefix="tgf-", dir="/tmp"))
        self.config = self.root / "empty.toml"
        self.config.write_text("# defaults only\n")
        self.env = isolated_env(self.root)
        self.data_dir = self.root / "data"
        self.socket_path = self.root / "d.sock"
        self.daemons: list[DaemonProc] = []

    def start(self, *, data_dir: Path | None = None, socket_path: Path | None = None, accounts: int | None = 50,
              env: dict[str, str] | None = None, extra_args: Sequence[str] = (),
              nofile: tuple[int, int] | None = None) -> DaemonProc:
        """Start a daemon (defaults: the fleet's data dir and socket); does not wait for it.

        ``accounts=None`` passes no --accounts (the data dir's recorded world, or the config's).

        ``nofile``: the daemon's descriptor limit (soft, hard), like a unit's LimitNOFILE.
        """
        daemon = DaemonProc(self, data_dir=data_dir or self.data_dir, socket_path=socket_path or self.socket_path,
                            accounts=accounts, config=self.config, env={**self.env, **(env or {})},
                            extra_args=extra_args, name=f"daemon{len(self.daemons) + 1}", nofile=nofile,
                            store=self.store)
        self.daemons.append(daemon)
        return daemon

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env={**self.env, **(env or {})})

    def cli_many(self, *calls: Sequence[str], env: dict[str, str] | None = None) -> list[subprocess.CompletedProcess[str]]:
        return run_cli_many(calls, env={**self.env, **(env or {})})

    def cli_batch(self, *calls: tuple[Sequence[str], dict[str, str] | None]) -> list[subprocess.CompletedProcess[str]]:
        """Like ``cli_many``, with extra environment variables per call: ``(args, env_or_None)``."""
        return run_cli_many([args for args, _ in calls], env=[{**self.env, **(extra or {})} for _, extra in calls])

    def close(self) -> None:
        for daemon in self.daemons:
            daemon.kill()
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def fleet(store: str | None = None) -> Iterator[Fleet]:
    f = Fleet(store)
    try:
        yield f
    finally:
        f.close()


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr


def one_line(text: str) -> str:
    """The only non-empty line of ``text``; fails when there are none or several."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected exactly one line, got {len(lines)}:\n{text}"
    return lines[0]
