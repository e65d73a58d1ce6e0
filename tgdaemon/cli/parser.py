"""The argument parser; options common to every command are accepted before or after it."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import shtab

from tgdaemon import installed_version
from tgdaemon.control.client import find_socket
from tgdaemon.errors import UsageError
from tgdaemon.timeutil import parse_duration

Register = Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None]
JSON_HELP = "answer as JSON on stdout; an error is one JSON object on stderr: {\"error\": ..., \"code\": EXIT}"


class ArgumentsError(UsageError):
    """What argparse found wrong with the command line, with the usage of the (sub)command it concerns:
    raised rather than printed, so that ``main`` prints it as text or, under --json, as JSON."""

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.usage = usage


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose mistakes go to ``main`` (exit 2 either way); its subparsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        raise ArgumentsError(f"{self.prog}: error: {message}", self.format_usage())


def json_wanted(argv: Sequence[str]) -> bool:
    """--json anywhere before a ``--``: known before parsing, so that even an argparse error is JSON."""
    args = list(argv)
    return "--json" in (args[:args.index("--")] if "--" in args else args)


def output_options() -> argparse.ArgumentParser:
    """--json, shared by every command (SUPPRESS: given before the subcommand, it is not reset after it)."""
    out = Parser(add_help=False)
    out.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=JSON_HELP)
    return out


def common_options() -> argparse.ArgumentParser:
    common = Parser(add_help=False, parents=[output_options()])
    path_completion(common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                                        help="config file (default: TGFLEET_CONFIG, else the platform's config dir)"))
    path_completion(common.add_argument(
        "--socket", metavar="PATH", default=argparse.SUPPRESS,
        help="the daemon's control socket (default: TGFLEET_SOCKET, else from the config)"))
    return common


def path_completion(action: argparse.Action, *, folders: bool = False) -> argparse.Action:
    """Marks an argument that names a file (or a folder) so the shells' completion offers paths for it."""
    action.complete = shtab.DIRECTORY if folders else shtab.FILE  # type: ignore[attr-defined]
    return action


def build_parser(*registers: Register) -> argparse.ArgumentParser:
    common = common_options()
    parser = Parser(prog="tgdaemon", parents=[common], description="Operate a fleet of Telegram accounts you own.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {installed_version()}",
                        help="print the installed version and exit")
    sub = parser.add_subparsers(metavar="COMMAND")
    for register in registers:
        register(sub, common)
    return parser


def group_help(group: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """A command group run without its action: the group's help (exit 2), or under --json one error line."""
    def run(args: argparse.Namespace) -> int:
        if args.json:
            raise UsageError(f"{group.prog}: give an action (see {group.prog} --help)")
        group.print_help()
        return 2
    return run


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def nonblank(text: str) -> str:
    """A text that must say something (a reason, a name): blank is refused here, not by the daemon."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be blank")
    return text.strip()


def duration(text: str) -> float:
    """Every option that takes a duration takes it through this: ``timeutil.parse_duration``'s forms."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def socket_path(args: argparse.Namespace) -> Path:
    """The socket ``find_socket`` finds from this command's --socket and --config (absent when not given)."""
    return find_socket(getattr(args, "socket", None), getattr(args, "config", None))

