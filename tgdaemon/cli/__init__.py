"""``tgdaemon``: the daemon (``run``, ``demo``) and the admin commands, thin clients of the control socket.

Operator mistakes (bad config, bad arguments, no daemon) end in one line on
stderr and a non-zero exit code, never a traceback: 2 for a bad argument or
configuration, 1 for what did not work. Under --json that line is one JSON
object, ``{"error": MESSAGE, "code": EXIT}`` (and ``"reason"``, the daemon's
error code, when the daemon refused), with the same exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

import msgspec

from tgdaemon.cli import admin, completion, daemon, store
from tgdaemon.cli.parser import ArgumentsError, build_parser, json_wanted
from tgdaemon.errors import ApiError, TgfleetError


def root_parser() -> argparse.ArgumentParser:
    """The whole command line, as ``main`` parses it and ``completion`` describes it to a shell."""
    return build_parser(daemon.register, admin.register, store.register, completion.register)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    as_json = json_wanted(argv)
    try:
        parser = root_parser()
        args = parser.parse_args(argv)
        args.json = getattr(args, "json", False)
        if not getattr(args, "func", None):
            if as_json:
                raise ArgumentsError("tgdaemon: give a command (see tgdaemon --help)", parser.format_usage())
            parser.print_help(sys.stderr)
            return 2
        result = args.func(args)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)
    except TgfleetError as exc:
        report(exc, as_json)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `tgdaemon ... | head` stopped reading: quiet, as a shell's own tools are
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def report(exc: TgfleetError, as_json: bool) -> None:
    """The one error line: argparse's usage and message, ``tgdaemon: MESSAGE``, or the JSON object."""
    if as_json:
        error: dict[str, object] = {"error": str(exc), "code": exc.exit_code}
        if isinstance(exc, ApiError):
            error["reason"] = exc.code
        sys.stderr.write(msgspec.json.encode(error).decode() + "\n")
    elif isinstance(exc, ArgumentsError):
        sys.stderr.write(exc.usage + str(exc) + "\n")
    else:
        print(f"tgdaemon: {exc}", file=sys.stderr)
