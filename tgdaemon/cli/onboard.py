"""``accounts login`` and ``accounts import``: the CLI reads the operator's files and prompts;
the daemon talks to Telegram and stores the result."""

from __future__ import annotations

import argparse
import base64
import contextlib
import getpass
import sqlite3
import sys
from pathlib import Path
from typing import Any

from msgspec import UNSET

from tgdaemon.cli.parser import positive_int, socket_path
from tgdaemon.control.client import ControlClient
from tgdaemon.errors import ApiError, UsageError
from tgdaemon.wire import Account, Cancelled, ImportResults, LoginStarted, LoginStep

CODE_TRIES = 3
SQLITE_MAGIC = b"SQLite format 3\x00"


def register(acc: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    login = acc.add_parser("login", parents=[common], help="sign an account in with a code from Telegram")
    login.add_argument("phone", help="international format, e.g. +15551234567")
    login.add_argument("--label", default="", help="a name for the account (default: the phone)")
    login.add_argument("--probe", action="store_true", help="a probe account (inspects channels, no setup)")
    login.add_argument("--proxy", type=positive_int, metavar="ID",
                       help="sign in through this proxy (`tgdaemon proxies list`); it stays the account's own")
    login.set_defaults(func=cmd_login)

    imp = acc.add_parser("import", parents=[common], help="import Telethon .session files or string sessions")
    imp.add_argument("paths", nargs="+", metavar="PATH",
                     help="a Telethon .session file, or a text file with one string session per line"
                          " (optionally followed by a tab and a label)")
    imp.add_argument("--probe", action="store_true", help="import them as probe accounts")
    imp.add_argument("--label-prefix", default="", metavar="P", help="put P before every label")
    imp.add_argument("--no-check", action="store_true", help="do not sign in to check each session first")
    imp.add_argument("--proxy", type=positive_int, metavar="ID",
                     help="every imported account's own proxy; each check already goes through it")
    imp.set_defaults(func=cmd_import)


def prompt(text: str, secret: bool = False) -> str:
    """Ask on the terminal; read a plain line when stdin is not one (scripts, tests)."""
    if sys.stdin.isatty():
        return getpass.getpass(text) if secret else input(text)
    sys.stderr.write(text + "\n")  # not a terminal: one line per prompt, so messages never glue onto it
    sys.stderr.flush()
    line = sys.stdin.readline()
    if not line:
        raise UsageError("no answer on standard input; login cancelled")
    return line.strip()


async def cmd_login(args: argparse.Namespace) -> int:
    async with ControlClient(socket_path(args), timeout=120) as client:
        started = await client.call("POST", "/login", LoginStarted, body={"phone": args.phone, "label": args.label,
                                                                          "probe": args.probe, "proxy": args.proxy})
        print(f"Telegram sent a login code to {started.phone_masked} (in the Telegram app, or by SMS).")
        try:
            account = await _answer(client, started.login_id)
        except BaseException:
            await _cancel(client, started.login_id)
            raise
    print(f"signed in: account {account.id} ({account.label}, {account.phone_masked})"
          + (", probe" if account.is_probe else ""))
    return 0


async def _answer(client: ControlClient, login_id: str) -> Account:
    """The code, then the 2FA password if Telegram wants one; the signed-in account."""
    for step, path, key, text, secret in (("code", f"/login/{login_id}/code", "code", "Code: ", False),
                                          ("password", f"/login/{login_id}/password", "password",
                                           "2FA password: ", True)):
        for attempt in range(CODE_TRIES):
            try:
                result = await client.call("POST", path, LoginStep, body={key: prompt(text, secret)})
            except ApiError as exc:
                if exc.code != "login_retry":
                    raise
                if attempt == CODE_TRIES - 1:
                    raise ApiError(f"{exc} — {CODE_TRIES} tries used; start the login again") from None
                print(f"tgdaemon: {exc}", file=sys.stderr)
                continue
            if result.account is not UNSET:  # done: signed in
                return result.account
            break  # the code was right; Telegram wants the 2FA password next
    raise ApiError("login did not finish")


async def _cancel(client: ControlClient, login_id: str) -> None:
    try:
        await client.call("DELETE", f"/login/{login_id}", Cancelled)
    except Exception:  # the daemon drops it on its own after the login timeout
        pass


def read_sessions(path: Path, prefix: str) -> tuple[list[dict[str, Any]], list[str]]:
    """(import items, problems) from one file; a corrupt file or line is a problem, not a crash."""
    try:
        head = path.read_bytes()[:16]
    except OSError as exc:
        return [], [f"{path}: cannot read: {exc.strerror}"]
    if head == SQLITE_MAGIC:
        return _read_sqlite_session(path, prefix)
    from telethon.sessions import (
        StringSession,  # only here: admin commands start faster without Telethon
    )

    items, problems = [], []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        return [], [f"{path}: neither a Telethon .session file nor a text file of string sessions"]
    for number, line in enumerate(lines, 1):
        text, _, label = line.strip().partition("\t")
        if not text or text.startswith("#"):
            continue
        source = f"{path}:{number}"
        try:
            session = StringSession(text.strip())
        except Exception:
            session = None
        if session is None or session.auth_key is None:
            problems.append(f"{source}: not a Telethon string session")
            continue
        items.append(_item(source, prefix + (label.strip() or f"{path.stem}-{number}"), session.dc_id,
                           session.server_address, session.port, session.auth_key.key))
    if not items and not problems:
        problems.append(f"{path}: no sessions in it")
    return items, problems


def _read_sqlite_session(path: Path, prefix: str) -> tuple[list[dict[str, Any]], list[str]]:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            rows = conn.execute("SELECT dc_id, server_address, port, auth_key FROM sessions").fetchall()
    except sqlite3.Error as exc:
        return [], [f"{path}: not a Telethon .session file ({exc})"]
    good = [r for r in rows if r[3] and len(r[3]) == 256]
    if not good:
        return [], [f"{path}: the session in it has no auth key (never signed in?)"]
    dc_id, server, port, key = good[0]
    return [_item(str(path), prefix + path.stem, dc_id, server, port, key)], []


def _item(source: str, label: str, dc_id: int, server: str, port: int, key: bytes) -> dict[str, Any]:
    return {"source": source, "label": label, "dc_id": dc_id, "server": server, "port": port,
            "auth_key": base64.b64encode(key).decode()}


async def cmd_import(args: argparse.Namespace) -> int:
    items: list[dict[str, Any]] = []
    problems: list[str] = []
    for raw in args.paths:
        found, bad = read_sessions(Path(raw), args.label_prefix)
        items.extend(found)
        problems.extend(bad)
    for line in problems:
        print(f"skipped {line}", file=sys.stderr)
    if not items:
        print("nothing to import", file=sys.stderr)
        return 1
    async with ControlClient(socket_path(args), timeout=600) as client:
        data = await client.call("POST", "/accounts/import", ImportResults, body={
            "sessions": items, "probe": args.probe, "check": not args.no_check, "proxy": args.proxy})
    imported = 0
    for result in data.results:
        if result.ok:
            imported += 1
            print(f"{result.source}: imported as account {result.account_id} ({result.label}"
                  + (f", {result.phone_masked}" if result.phone_masked else "") + ")")
        else:
            print(f"{result.source}: {result.error}", file=sys.stderr)
    skipped = len(problems) + len(data.results) - imported
    print(f"imported {imported}, skipped {skipped}")
    return 0 if skipped == 0 else 1
