"""``tgdaemon``: the daemon (``run``, ``demo``) and the admin commands, thin clients of the control socket.

Operator mistakes (bad config, bad arguments, no daemon) end in one line on
stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from tgdaemon.cli import admin, daemon, store
from tgdaemon.cli.parser import build_parser
from tgdaemon.errors import TgfleetError


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(daemon.register, admin.register, store.register)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        result = args.func(args)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)
    except TgfleetError as exc:
        print(f"tgdaemon: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
