"""``accounts export ID... --format F --to DIR``: sessions as files for another tool (see
``tgdaemon.sessionfiles.export``). The keys come from the daemon over its control socket
(``POST /accounts/export``) and go only into the files: nothing printed names one."""

from __future__ import annotations

import argparse
import base64
import os
import stat
import sys
from pathlib import Path

from tgdaemon.cli import output
from tgdaemon.cli.parser import path_completion, positive_int, socket_path
from tgdaemon.control.client import ControlClient
from tgdaemon.errors import TgfleetError, UsageError
from tgdaemon.sessionfiles.export import Exported, file_names, write
from tgdaemon.wire import EXPORT_FORMATS, Account, ExportedSessions


def register(acc: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    exp = acc.add_parser("export", parents=[common],
                         help="write accounts' sessions as files for another tool (mode 600; never over a file)")
    exp.add_argument("ids", nargs="+", type=positive_int, metavar="ID", help="the accounts' ids")
    exp.add_argument("--format", required=True, choices=EXPORT_FORMATS,
                     help="telethon-string: LABEL.txt; telethon-session, pyrogram: LABEL.session")
    path_completion(exp.add_argument("--to", required=True, type=Path, metavar="DIR",
                                     help="made mode 700 when it is not there"), folders=True)
    exp.set_defaults(func=cmd_export)


def _refuse_existing(paths: list[Path]) -> None:
    if there := [p for p in paths if os.path.lexists(p)]:
        raise TgfleetError(f"{there[0]} exists; nothing exported (export to another folder, or move it away)")


async def cmd_export(args: argparse.Namespace) -> int:
    target: Path = args.to
    if target.exists() and not target.is_dir():
        raise UsageError(f"--to {target}: not a folder")
    ids = list(dict.fromkeys(args.ids))
    async with ControlClient(socket_path(args)) as client:
        # The names first, from the labels: no key is handed out for an export that would be refused.
        labels = [(await client.call("GET", f"/accounts/{account_id}", Account)).label for account_id in ids]
        _refuse_existing([target / name for name in file_names(
            [Exported(account_id, label, 0, "", 0, b"") for account_id, label in zip(ids, labels, strict=True)],
            args.format)])
        data = await client.call("POST", "/accounts/export", ExportedSessions, body={"ids": ids, "format": args.format})
    sessions = [Exported(s.account_id, s.label, s.dc_id, s.server, s.port, base64.b64decode(s.auth_key), s.user_id,
                         s.api_id) for s in data.sessions]
    paths = [target / name for name in file_names(sessions, args.format)]
    _refuse_existing(paths)  # a label changed meanwhile
    if not target.exists():
        target.mkdir(mode=0o700, parents=True)
        os.chmod(target, 0o700)
    elif stat.S_IMODE(target.stat().st_mode) & 0o077:
        print(f"tgdaemon: note: {target} is open to other users (mode {stat.S_IMODE(target.stat().st_mode):o});"
              " the files in it are mode 600", file=sys.stderr)
    for session, path in zip(sessions, paths, strict=True):
        try:
            write(path, args.format, session)
        except FileExistsError:
            raise TgfleetError(f"{path} appeared meanwhile; not overwritten. Exported before it: "
                               f"{paths.index(path)} of {len(paths)}") from None
        except OSError as exc:
            raise TgfleetError(f"{path}: cannot write it: {exc.strerror}") from None
        if not args.json:
            print(f"account {session.account_id} ({session.label}): {path}")
    output.answer(args, {"format": args.format, "to": str(target), "files": [
        {"account_id": s.account_id, "label": s.label, "path": str(p)} for s, p in zip(sessions, paths, strict=True)]},
        f"exported {len(paths)} account(s) as {args.format} to {target}")
    return 0
