"""``backup PATH``: the running daemon writes a consistent copy of its database (mode 0600) to PATH.

The daemon writes the file, not this command: PATH is made absolute here,
against this shell's working directory, before it is sent.
"""

from __future__ import annotations

import argparse
import os

from tgdaemon.cli import output
from tgdaemon.cli.parser import path_completion, socket_path
from tgdaemon.control.client import ControlClient
from tgdaemon.errors import TgfleetError
from tgdaemon.wire import BackupWritten

# A large fleet's database takes a while to copy; the daemon answers when the file is in place.
BACKUP_TIMEOUT = 3600.0

DESCRIPTION = (
    "Copy the running daemon's database to PATH while it keeps working. The copy is written beside PATH under a"
    " temporary name and moved into place only when complete. To restore: stop the daemon, copy the file to"
    " DATA_DIR/tgfleet.sqlite3, remove any tgfleet.sqlite3-wal and tgfleet.sqlite3-shm beside it, start the daemon.")


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    cmd = sub.add_parser(
        "backup", parents=[common], help="an online, consistent copy of the database (mode 0600; it holds auth keys)",
        description=DESCRIPTION)
    path_completion(cmd.add_argument("path", metavar="PATH", help="the file to write (its directory must exist)"))
    cmd.add_argument("--force", action="store_true", help="replace PATH if it exists (default: refuse)")
    cmd.set_defaults(func=cmd_backup)


async def cmd_backup(args: argparse.Namespace) -> int:
    target = os.path.abspath(os.path.expanduser(args.path))
    async with ControlClient(socket_path(args), timeout=BACKUP_TIMEOUT) as client:
        data = await client.call("POST", "/backup", BackupWritten, body={"path": target, "force": args.force})
    if not os.path.isfile(target):
        raise TgfleetError(f"backup {target}: the daemon wrote it, but this shell cannot see it: the daemon has a"
                           " file system view of its own (systemd PrivateTmp, a container); write it under the"
                           " data dir or a ReadWritePaths directory instead")
    if args.json:
        output.print_json(data)
    else:
        print(f"backup written to {data.path}: {size(data.bytes)} in {data.seconds:.2f} s")
    return 0


def size(n: int) -> str:
    """Bytes as people read them: 4.2 MB, 812 kB, 96 B."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
