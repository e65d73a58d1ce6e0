"""``accounts login`` and ``accounts import``: the CLI reads the operator's files (``tgdaemon.sessionfiles``)
and prompts; the daemon talks to Telegram and stores the result."""

from __future__ import annotations

import argparse
import base64
import getpass
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from msgspec import UNSET

from tgdaemon.cli import devices, output
from tgdaemon.cli.parser import path_completion, positive_int, socket_path
from tgdaemon.control.client import ControlClient
from tgdaemon.errors import ApiError, TgfleetError, UsageError
from tgdaemon.sessionfiles import Found
from tgdaemon.sessionfiles.detect import read_paths
from tgdaemon.wire import Account, Cancelled, ImportResults, LoginStarted, LoginStep

CODE_TRIES = 3
BATCH = 500  # sessions per request: the body's limit is 2000, and a batch's checks end within the timeout


def register(acc: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    login = acc.add_parser("login", parents=[common], help="sign an account in with a code from Telegram")
    login.add_argument("phone", help="international format, e.g. +15551234567")
    login.add_argument("--label", default="", help="a name for the account (default: the phone)")
    login.add_argument("--probe", action="store_true", help="a probe account (inspects channels, no setup)")
    login.add_argument("--proxy", type=positive_int, metavar="ID",
                       help="sign in through this proxy (`tgdaemon proxies list`); it stays the account's own")
    login.set_defaults(func=cmd_login)

    imp = acc.add_parser("import", parents=[common],
                         help="import sessions: Telethon, Pyrogram, Telegram Desktop tdata (see docs/notes-formats.md)")
    path_completion(imp.add_argument(
        "paths", nargs="+", metavar="PATH",
        help="a Telethon or Pyrogram .session file (with its .json sidecar, if any), a tdata folder, or a text file"
             " with one Telethon or Pyrogram string session per line (optionally followed by a tab and a label)"))
    imp.add_argument("--probe", action="store_true", help="import them as probe accounts")
    imp.add_argument("--label-prefix", default="", metavar="P", help="put P before every label")
    imp.add_argument("--no-check", action="store_true", help="do not sign in to check each session first")
    imp.add_argument("--dry-run", action="store_true",
                     help="list what would be imported, what is a duplicate and what is broken; write nothing")
    imp.add_argument("--passcode", action="store_true",
                     help="the tdata folders have a local passcode: ask for it (one for all of them)")
    imp.add_argument("--save-2fa", action="store_true",
                     help="add 2FA passwords found in sidecars to [setup.2fa] password_file (else they are ignored)")
    devices.add_device_options(imp, "the imported accounts (over their sidecars' values)")
    imp.add_argument("--proxy", type=positive_int, metavar="ID",
                     help="every imported account's own proxy; each check already goes through it")
    imp.set_defaults(func=cmd_import)


def prompt(text: str, secret: bool = False) -> str:
    """Ask on the terminal; read a plain line when stdin is not one (scripts, tests). Prompts go to stderr
    (getpass's to the terminal): stdout is the answer alone, JSON under --json, even into a file."""
    if sys.stdin.isatty():
        if secret:
            return getpass.getpass(text)
        sys.stderr.write(text)
        sys.stderr.flush()
        return input()
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
        print(f"Telegram sent a login code to {started.phone_masked} (in the Telegram app, or by SMS).",
              file=sys.stderr if args.json else sys.stdout)
        try:
            account = await _answer(client, started.login_id)
        except BaseException:
            await _cancel(client, started.login_id)
            raise
    output.answer(args, account, f"signed in: account {account.id} ({account.label}, {account.phone_masked})"
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


def read_sessions(path: Path, prefix: str, passcode: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """(import items, problems) from one path; a corrupt file, line or folder is a problem, not a crash."""
    found, problems = read_paths([path], prefix, passcode)
    return [_item(f, {}, save_2fa=False) for f in found], problems


def _item(found: Found, options: dict[str, Any], *, save_2fa: bool) -> dict[str, Any]:
    """The import body's item: the options' device fields over the sidecar's; the password only to be saved."""
    device = {**{k: v for k, v in asdict(found.device).items() if v is not None}, **options}
    item: dict[str, Any] = {"source": found.source, "label": found.label[:100], "dc_id": found.dc_id,
                            "server": found.server, "port": found.port,
                            "auth_key": base64.b64encode(found.auth_key).decode()}
    if device:
        item["device"] = device
    if found.phone:
        item["phone"] = found.phone
    if save_2fa and found.password:
        item["password"] = found.password
    return item


async def cmd_import(args: argparse.Namespace) -> int:
    paths = [Path(raw) for raw in args.paths]
    passcode = prompt("tdata passcode: ", secret=True) or None if args.passcode else None
    found, problems = read_paths(paths, args.label_prefix, passcode)
    options = devices.device_options(args)
    for item in found:
        if item.password and not args.save_2fa:
            print(f"a 2FA password in {item.sidecar} was not saved: pass --save-2fa to add it to the password file",
                  file=sys.stderr)
    if args.dry_run:
        return await _dry_run(args, found, problems, options)
    for line in [] if args.json else problems:
        print(f"skipped {line}", file=sys.stderr)
    if not found:
        raise TgfleetError("nothing to import")
    answers = []
    async with ControlClient(socket_path(args), timeout=600) as client:
        for start in range(0, len(found), BATCH):
            data = await client.call("POST", "/accounts/import", ImportResults, body={
                "sessions": [_item(f, options, save_2fa=args.save_2fa) for f in found[start:start + BATCH]],
                "probe": args.probe, "check": not args.no_check, "save_2fa": args.save_2fa,
                "proxy": args.proxy})
            answers += data.results
            for result in [] if args.json else data.results:
                if result.ok:
                    print(f"{result.source}: imported as account {result.account_id} ({result.label}"
                          + (f", {result.phone_masked}" if result.phone_masked else "") + ")")
                    if result.twofa is not UNSET:
                        print(f"{result.source}: {result.twofa}")
                else:
                    print(f"{result.source}: {result.error}", file=sys.stderr)
    imported = sum(r.ok for r in answers)
    skipped = len(problems) + len(answers) - imported
    output.answer(args, {"results": answers, "problems": problems, "imported": imported, "skipped": skipped},
                  f"imported {imported}, skipped {skipped}")
    if skipped and args.json:
        raise TgfleetError(f"imported {imported}, skipped {skipped}")
    return 0 if skipped == 0 else 1


async def _dry_run(args: argparse.Namespace, found: list[Found], problems: list[str], options: dict[str, Any]) -> int:
    """One line for each session or problem; the daemon says which are duplicates, nothing is written."""
    results = []
    if found:
        async with ControlClient(socket_path(args), timeout=120) as client:
            for start in range(0, len(found), BATCH):
                data = await client.call("POST", "/accounts/import", ImportResults, body={
                    "sessions": [_item(f, options, save_2fa=False) for f in found[start:start + BATCH]],
                    "probe": args.probe, "check": False, "dry_run": True,
                    "save_2fa": args.save_2fa})  # the passwords stay here; the daemon checks its password_file
                results.extend(data.results)
    if args.json:
        output.print_json({"would_import": [r for r in results if r.ok], "duplicates": [r for r in results if not r.ok],
                           "broken": problems})
        if problems:
            raise TgfleetError(f"{len(problems)} broken; nothing written")
        return 0
    by_source = {f.source: f for f in found}
    would = duplicates = 0
    for result in results:
        item = by_source[result.source]
        if result.ok:
            would += 1
            extra = [item.kind]
            if options or item.device.given():
                extra.append("own device")
            if item.password:
                extra.append("2FA password " + ("to save" if args.save_2fa else "not saved"))
            print(f"would import {result.source} as {result.label} ({', '.join(extra)})")
        else:
            duplicates += 1
            print(f"duplicate {result.source}: {result.error}")
    for line in problems:
        print(f"broken {line}")
    print(f"would import {would}, duplicates {duplicates}, broken {len(problems)}; nothing written")
    return 0 if not problems else 1
