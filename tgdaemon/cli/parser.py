"""The argument parser; options common to every command are accepted before or after it."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from tgdaemon.control.client import find_socket

Register = Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None]


def common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="config file (default: TGFLEET_CONFIG, else the platform's config dir)")
    common.add_argument("--socket", metavar="PATH", default=argparse.SUPPRESS,
                        help="the daemon's control socket (default: TGFLEET_SOCKET, else from the config)")
    return common


def build_parser(*registers: Register) -> argparse.ArgumentParser:
    common = common_options()
    parser = argparse.ArgumentParser(prog="tgdaemon", parents=[common],
                                     description="Operate a fleet of Telegram accounts you own.")
    sub = parser.add_subparsers(metavar="COMMAND")
    for register in registers:
        register(sub, common)
    return parser


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def socket_path(args: argparse.Namespace) -> Path:
    """The socket ``find_socket`` finds from this command's --socket and --config (absent when not given)."""
    return find_socket(getattr(args, "socket", None), getattr(args, "config", None))
