"""``tgdaemon store copy``: move a fleet from one store to another, with the daemon stopped.

Unlike the admin commands this one opens the databases itself (no daemon may run on them): the work is
``tgdaemon.store.copy``; here are the arguments, the passwords and what is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from tgdaemon.cli import output
from tgdaemon.cli.parser import (
    group_help,
    output_options,
    path_completion,
    positive_int,
)
from tgdaemon.errors import TgfleetError, UsageError

DESCRIPTION = (
    "Copy every table of the store at --from into the empty store at --to (sessions, auth keys and entity"
    " caches, setup progress, quotas, tasks and their leases, providers, events, counters), then compare row"
    " counts and a checksum of every table on both sides; the copy is made final only when all match, and"
    " exits 0. Stop the daemon first. Both stores are brought to this tgdaemon's schema version first, as"
    " starting a daemon on them would. URLs: sqlite:///ABSOLUTE/PATH or"
    " postgresql://user@host:port/db?sslmode=...; a password comes from --from-password-file /"
    " --to-password-file or libpq's own sources (PGPASSFILE, ~/.pgpass, PGPASSWORD), never from the URL.")
PROGRESS_ROWS = 50_000  # tables at least this big report their progress on stderr
PROGRESS_SECONDS = 2.0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    store = sub.add_parser("store", parents=[output_options()], help="work on a stopped daemon's store (copy)")
    actions = store.add_subparsers(metavar="ACTION")
    copy = actions.add_parser("copy", parents=[output_options()], help="copy a fleet to a new store and verify it",
                              description=DESCRIPTION)
    copy.add_argument("--from", dest="source", required=True, metavar="URL", help="the store to copy")
    copy.add_argument("--to", dest="target", required=True, metavar="URL", help="an empty store to copy into")
    for flag, which in (("--from-password-file", "source"), ("--to-password-file", "target")):
        path_completion(copy.add_argument(flag, metavar="PATH", help=f"the {which} database's password"))
    copy.add_argument("--batch", type=positive_int, default=5000, metavar="N", help="rows per read and write")
    copy.set_defaults(func=cmd_copy)
    store.set_defaults(func=group_help(store))


async def cmd_copy(args: argparse.Namespace) -> int:
    from tgdaemon.store.copy import copy_store  # the drivers load only for this command

    os.umask(0o077)  # a new SQLite file holds auth keys
    source = checked_url(args.source, "--from")
    target = checked_url(args.target, "--to")
    report = await copy_store(source, target, from_password=password(args.from_password_file, "--from-password-file"),
                              to_password=password(args.to_password_file, "--to-password-file"),
                              batch=args.batch, progress=Progress(), say=say)
    if args.json:
        output.print_json({"ok": report.ok, "source": report.source, "target": report.target,
                           "seconds": round(report.seconds, 3), "notes": report.notes,
                           "tables": [{"name": t.name, "source_rows": t.source_rows, "target_rows": t.target_rows,
                                       "checksum": t.source_sum, "match": t.ok} for t in report.tables]})
    else:
        table = output.table("table", "source rows", "target rows", "checksum")
        for t in report.tables:
            table.add_row(t.name, str(t.source_rows), str(t.target_rows),
                          f"match {t.source_sum[:12]}" if t.ok else "[red]DIFFERS[/]")
        con = output.console()
        con.print(table)
        rows = sum(t.source_rows for t in report.tables)
        if report.ok:
            con.print(f"copied {rows} rows in {report.seconds:.1f} s: {report.source} -> {report.target}")
    if not report.ok:
        bad = ", ".join(t.name for t in report.tables if not t.ok)
        raise TgfleetError(f"the copy did not verify ({bad}); nothing was kept in {report.target}")
    return 0


def checked_url(url: str, flag: str) -> str:
    """A password in a URL shows in the process list and the shell's history: refused, not used."""
    try:
        parts = urlsplit(url)
        secret = parts.password or any(k in ("password", "sslpassword") and v for k, v in parse_qsl(parts.query))
    except ValueError:  # malformed: the store's own parser says how
        return url
    if secret:
        from tgdaemon.store.postgres.url import redact

        raise UsageError(f"{flag} {redact(url)}: the URL holds a password, which would show in the process list"
                         f" and shell history; put it in {flag}-password-file or libpq's ~/.pgpass")
    return url


def password(path: str | None, flag: str) -> str | None:
    if path is None:
        return None
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{flag} {path}: {getattr(exc, 'strerror', None) or exc}") from None
    secret = text.rstrip("\r\n")
    if not secret:
        raise UsageError(f"{flag} {path}: the file is empty")
    return secret


class Progress:
    """A line on stderr every few seconds for a big table, and one when it is done."""

    def __init__(self) -> None:
        self._last = 0.0

    def __call__(self, what: str, table: str, done: int, total: int) -> None:
        if total < PROGRESS_ROWS:
            return
        at = time.monotonic()
        if done < total and at - self._last < PROGRESS_SECONDS:
            return
        self._last = at
        say(f"{table}: {done}/{total} rows {what} ({100 * done // total} %)")


def say(line: str) -> None:
    """What the copy is doing, on stderr: stdout is the table (or the JSON) alone."""
    print(f"tgdaemon: {line}", file=sys.stderr, flush=True)
