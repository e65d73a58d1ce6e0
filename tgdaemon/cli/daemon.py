"""``tgdaemon run`` and ``tgdaemon demo``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tgdaemon import config, logredact
from tgdaemon.cli.parser import path_completion, positive_int
from tgdaemon.control.client import ControlClient
from tgdaemon.errors import TgfleetError
from tgdaemon.lifecycle import exitguard
from tgdaemon.wire import Quota

if TYPE_CHECKING:
    from tgdaemon.gateway.base import Gateway


# The demo shows the pipeline at work: setup on, a declared name, dispatch every minute; and every account's
# health checked at start (then every 6 h), so the Health column fills.
DEMO_CONFIG = """\
[setup]
enabled = true
dispatch_interval_seconds = 60

[setup.profile]
first_name = "Fleet"
last_name = "Demo"

[health]
interval_hours = 6
spambot = true
"""


STORE_HELP = ("sqlite:///ABSOLUTE/PATH or postgresql://USER@HOST:PORT/DB (default: the data dir's SQLite file);"
              " no password in it: [store] password_file, PGPASSWORD or ~/.pgpass")


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    run = sub.add_parser("run", parents=[common], help="run the daemon in the foreground")
    path_completion(run.add_argument("--data-dir", metavar="DIR",
                                     help="the lock, media and (by default) the SQLite database"), folders=True)
    run.add_argument("--store", metavar="URL", help=STORE_HELP)
    run.add_argument("--http", metavar="HOST:PORT", help="provider API address (default 127.0.0.1:8780)")
    run.add_argument("--simulate", action="store_true", help="use the built-in Telegram simulator")
    run.add_argument("--accounts", type=positive_int, metavar="N",
                     help="simulated accounts (a new data dir records its world; an existing one keeps its own"
                          " and refuses another)")
    run.add_argument("--seed", type=int, metavar="S", help="simulator seed (recorded like --accounts)")
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", parents=[common],
                          help="the daemon on the simulator in a temporary data dir, with the dashboard")
    demo.add_argument("--accounts", type=positive_int, default=200, metavar="N",
                      help="simulated accounts (default 200)")
    demo.add_argument("--seed", type=int, default=1, metavar="S", help="simulator seed (default 1)")
    demo.add_argument("--store", metavar="URL", help=STORE_HELP + " (an empty one: a demo fills it)")
    demo.set_defaults(func=cmd_demo)


def run_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    daemon: dict[str, Any] = {}
    simulator: dict[str, Any] = {}
    for key in ("data_dir", "socket", "http"):
        if getattr(args, key, None) is not None:
            daemon[key] = str(getattr(args, key))
    for key in ("accounts", "seed"):
        if getattr(args, key, None) is not None:
            simulator[key] = getattr(args, key)
    store = {"url": args.store} if getattr(args, "store", None) is not None else {}
    return {k: v for k, v in (("daemon", daemon), ("simulator", simulator), ("store", store)) if v}


def cmd_run(args: argparse.Namespace) -> int:
    os.umask(0o077)  # the database holds auth keys: nothing the daemon writes is for other users
    cfg, origins = config.load_with_origins(getattr(args, "config", None), overrides=run_overrides(args))
    if args.http:
        config.parse_bind(args.http, "--http")
    logging.basicConfig(level=cfg.daemon.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logredact.install(logredact.configured_secrets(cfg))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if cfg.daemon.log_level != "debug":  # Telethon narrates every connection at INFO
        logging.getLogger("telethon").setLevel(logging.WARNING)
    from tgdaemon.lifecycle.daemon import (
        Daemon,  # Telethon is slow to import; admin commands skip it
    )

    daemon = Daemon(cfg, choose_gateway(cfg, args.simulate, origins), guard_exit=True)
    try:
        code = asyncio.run(daemon.run())
    except BaseException as exc:
        exitguard.after_run(exc.exit_code if isinstance(exc, TgfleetError) else 1)
        raise
    exitguard.after_run(code)  # aiosqlite's threads are not daemon threads: none may keep us from exiting
    return code


def choose_gateway(cfg: config.Config, simulate: bool, origins: dict[str, str]) -> Gateway:
    """The simulator when asked for, or when no api_id/api_hash is configured; else real Telegram.

    ``origins`` says which keys the operator set (config.load_with_origins): the simulator's world
    follows a data dir's record except where the operator chose otherwise."""
    from tgdaemon.gateway.simulator import Simulator
    from tgdaemon.gateway.telegram import TelethonGateway

    if simulate or not cfg.telegram.configured:
        if not simulate:
            logging.getLogger(__name__).warning(
                "no [telegram] api_id/api_hash configured: running on the simulator")
        chosen = {key.removeprefix("simulator."): origin for key, origin in origins.items()
                  if key.startswith("simulator.")}
        return Simulator(cfg.simulator, chosen=chosen, node=cfg.node_name(),
                         idle_seconds=cfg.telegram.idle_disconnect_seconds)
    return TelethonGateway(cfg.telegram, proxies=cfg.proxies)


def cmd_demo(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="tgfleet-demo-"))
    sock = tmp / "tgdaemon.sock"
    cfg_path = getattr(args, "config", None)
    if cfg_path is None:
        cfg_path = tmp / "config.toml"
        cfg_path.write_text(DEMO_CONFIG)
    cmd = [sys.executable, "-m", "tgdaemon", "run", "--simulate", "--config", str(cfg_path),
           "--accounts", str(args.accounts), "--seed", str(args.seed),
           "--data-dir", str(tmp / "data"), "--socket", str(sock), "--http", "127.0.0.1:0",
           *(("--store", args.store) if args.store else ())]
    log_path = tmp / "daemon.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        _wait_for_socket(proc, sock, log_path)
        asyncio.run(_demo_quotas(sock))
        return _dashboard(sock)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def _dashboard(sock: Path) -> int:
    """``tgtui`` as a child in this terminal, until it quits; its exit code is the demo's.

    A child rather than an import: the daemon's package never imports the dashboard's. The
    dashboard owns the keyboard, Ctrl-C included, while it runs, so this process ignores SIGINT
    meanwhile, as a shell does while its foreground job runs; the daemon stops once it has quit."""
    child = subprocess.Popen([sys.executable, "-m", "tgtui", "--socket", str(sock)])
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        code = child.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    return code if code >= 0 else 128 - code  # killed by a signal: the shell's 128 + N


# Two quotas, so the demo's quotas view fills: post views on the newest posts, and a
# channel's subscribers; the daemon's own executor serves them (demo accounts are `local`).
DEMO_QUOTAS = [
    {"name": "news views", "target": "@tgfleet_news", "action": "post_stats", "last_n_posts": 5,
     "quantity": 400, "interval_seconds": 5, "expires_in_seconds": 86400},
    {"name": "markets subscribers", "target": "https://t.me/tgfleet_markets", "action": "channel_stats",
     "orders": 120, "interval_seconds": 20, "expires_in_seconds": 86400},
]


async def _demo_quotas(sock: Path) -> None:
    async with ControlClient(sock, timeout=30) as client:
        for body in DEMO_QUOTAS:
            await client.call("POST", "/quotas", Quota, body=body)


def _wait_for_socket(proc: subprocess.Popen[bytes], sock: Path, log_path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise TgfleetError(f"the demo daemon exited with code {proc.returncode}: {tail[0]}")
        if sock.exists():
            return
        time.sleep(0.05)
    raise TgfleetError(f"the demo daemon did not open {sock} within {timeout:.0f} s; see {log_path}")
