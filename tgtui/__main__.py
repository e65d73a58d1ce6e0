"""``tgtui [--socket PATH] [--config PATH] [--version]``."""

from __future__ import annotations

import argparse
import sys

from tgdaemon import installed_version
from tgdaemon.control.client import find_socket
from tgdaemon.errors import TgfleetError
from tgtui.app import run_dashboard


def main() -> int:
    parser = argparse.ArgumentParser(prog="tgtui", description="The tgfleet dashboard.")
    parser.add_argument("--socket", metavar="PATH", help="the daemon's control socket")
    parser.add_argument("--config", metavar="PATH", help="config file, to find the socket")
    parser.add_argument("--version", action="version", version=f"%(prog)s {installed_version()}",
                        help="print the installed version and exit")
    args = parser.parse_args()
    try:
        run_dashboard(find_socket(args.socket, args.config))
    except TgfleetError as exc:
        print(f"tgtui: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
