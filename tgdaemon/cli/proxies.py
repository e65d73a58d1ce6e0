"""``proxies add|list|remove|check`` and ``accounts set-proxy``: a proxy of their own for accounts.

A proxy URL holds a password or an MTProxy secret: it is parsed here before anything is sent (a mistake is
one line and exit code 2, never the URL echoed back), may be read from standard input (``-``) to keep it
out of the shell's history and the process list, and is never printed: a proxy is shown as
``scheme://host:port``.
"""

from __future__ import annotations

import argparse
import sys

from tgdaemon.cli import output
from tgdaemon.cli.parser import group_help, positive_int, socket_path
from tgdaemon.control.client import ControlClient
from tgdaemon.display import PROXY_STYLE
from tgdaemon.errors import UsageError
from tgdaemon.proxies.url import ProxyURLError, label_problem, parse
from tgdaemon.wire import Proxy, ProxyAdded, ProxyList, ProxyRemoved, ProxySet


def proxy_url(text: str) -> str:
    """argparse's check of URL (its own message for a bad value would quote it: the password with it)."""
    if text == "-":
        return text
    try:
        parse(text)
    except ProxyURLError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def proxy_label(text: str) -> str:
    if problem := label_problem(text.strip()):
        raise argparse.ArgumentTypeError(problem)
    return text.strip()


def register(sub: argparse._SubParsersAction, acc: argparse._SubParsersAction,
             common: argparse.ArgumentParser) -> None:
    setp = acc.add_parser("set-proxy", parents=[common], help="give accounts their own proxy (or none)",
                          description="Each account connects through PROXY (a proxy's ID, see `tgdaemon proxies"
                                      " list`) from its next connection on; `none`: no proxy of its own (the global"
                                      " [telegram.proxy], if any). A live connection is let finish its calls first.")
    setp.add_argument("targets", nargs="+", metavar="ID... PROXY|none", help="account ids, then the proxy's id or none")
    setp.set_defaults(func=cmd_set_proxy)

    proxies = sub.add_parser("proxies", parents=[common], help="the accounts' own proxies and their health")
    prox = proxies.add_subparsers(metavar="ACTION")
    add = prox.add_parser("add", parents=[common], help="add a proxy (socks5://, socks4://, http://, mtproxy://)")
    add.add_argument("url", type=proxy_url, metavar="URL",
                     help="socks5://USER:PASS@HOST:PORT, socks4://USER@HOST:PORT, http://USER:PASS@HOST:PORT,"
                          " mtproxy://HOST:PORT?secret=HEX; - reads it from standard input")
    add.add_argument("--label", type=proxy_label, default="", metavar="L", help="a name to tell it by")
    add.set_defaults(func=cmd_add)
    ls = prox.add_parser("list", parents=[common], help="list proxies: state, latency, the accounts using each")
    ls.set_defaults(func=cmd_list)
    rm = prox.add_parser("remove", parents=[common], help="remove a proxy no account uses")
    rm.add_argument("id", type=positive_int, metavar="ID", help="the proxy's id (see `tgdaemon proxies list`)")
    rm.add_argument("--force", action="store_true",
                    help="remove it even though accounts use it: they are left with no proxy of their own")
    rm.set_defaults(func=cmd_remove)
    check = prox.add_parser("check", parents=[common], help="check proxies now (default: every one)",
                            description="Connect through each proxy now and record what is found; exit code 1"
                                        " when one is dead.")
    check.add_argument("ids", type=positive_int, nargs="*", metavar="ID", help="the proxies to check (default: all)")
    check.set_defaults(func=cmd_check)
    proxies.set_defaults(func=group_help(proxies))


def _read_url(text: str) -> str:
    if text != "-":
        return text
    url = sys.stdin.readline().strip()
    try:
        parse(url)
    except ProxyURLError as exc:
        raise UsageError(str(exc)) from None
    return url


async def cmd_add(args: argparse.Namespace) -> int:
    url = _read_url(args.url)
    async with ControlClient(socket_path(args)) as client:
        added = (await client.call("POST", "/proxies", ProxyAdded, body={"url": url, "label": args.label})).proxy
    output.answer(args, added, f"proxy {added.id} added: {added.url}" + (f" ({added.label})" if added.label else "")
                  + f"; check it with `tgdaemon proxies check {added.id}`, give it to accounts with"
                    f" `tgdaemon accounts set-proxy ID... {added.id}`")
    return 0


def _table(rows: list[Proxy]) -> None:
    table = output.table("ID", "URL", "LABEL", "STATE", "LATENCY", "CHECKED", "ACCOUNTS", "WAITING", "LAST ERROR")
    for p in rows:
        table.add_row(str(p.id), p.url, p.label, f"[{PROXY_STYLE[p.state]}]{p.state}[/]",
                      "" if p.latency_ms is None else f"{p.latency_ms:.0f} ms", output.ago(p.checked_at, empty="never"),
                      str(p.accounts), str(p.held) if p.held else "", p.last_error or "")
    output.console().print(table)


async def cmd_list(args: argparse.Namespace) -> int:
    async with ControlClient(socket_path(args)) as client:
        rows = (await client.call("GET", "/proxies", ProxyList)).proxies
    if args.json:
        output.print_json(rows)
    elif rows:
        _table(rows)
    else:
        print("no proxies; add one with `tgdaemon proxies add URL`", file=sys.stderr)
    return 0


async def cmd_remove(args: argparse.Namespace) -> int:
    async with ControlClient(socket_path(args)) as client:
        data = await client.call("DELETE", f"/proxies/{args.id}", ProxyRemoved, params={"force": args.force})
    left = (f"; accounts {', '.join(map(str, data.accounts))} have no proxy of their own now" if data.accounts else "")
    output.answer(args, data, f"proxy {data.proxy.id} ({data.proxy.url}) removed{left}")
    return 0


async def cmd_check(args: argparse.Namespace) -> int:
    # Each check may take the whole proxies.timeout_seconds, a few at once: the daemon's answer may take long.
    async with ControlClient(socket_path(args), timeout=600) as client:
        rows = (await client.call("POST", "/proxies/check", ProxyList, body={"ids": args.ids or None})).proxies
    if args.json:
        output.print_json(rows)
    elif rows:
        _table(rows)
    else:
        print("no proxies to check", file=sys.stderr)
    return 1 if any(p.state == "dead" for p in rows) else 0


def _targets(words: list[str]) -> tuple[list[int], int | None]:
    if len(words) < 2:
        raise UsageError("accounts set-proxy: give the account ids, then the proxy's id or none")
    *ids, proxy = words
    bad = [w for w in ids if not w.isdigit() or int(w) < 1]
    if bad:
        raise UsageError(f"accounts set-proxy: {bad[0]!r} is not an account id")
    if proxy.lower() == "none":
        return [int(w) for w in ids], None
    if not proxy.isdigit() or int(proxy) < 1:
        raise UsageError(f"accounts set-proxy: the last word, {proxy!r}, is neither a proxy's id nor none")
    return [int(w) for w in ids], int(proxy)


async def cmd_set_proxy(args: argparse.Namespace) -> int:
    ids, proxy = _targets(args.targets)
    async with ControlClient(socket_path(args), timeout=120) as client:
        data = await client.call("POST", "/accounts/proxy", ProxySet, body={"ids": ids, "proxy": proxy})
    what = "no proxy of their own" if data.proxy is None else f"proxy {data.proxy.id} ({data.proxy.url})"
    unchanged = len(set(ids)) - len(data.changed)
    output.answer(args, data, f"{len(data.changed)} account(s) now use {what}"
                  + (f"; {unchanged} already did" if unchanged else "")
                  + ("; each connects that way from its next connection on" if data.changed else ""))
    if data.proxy is not None and data.proxy.state == "dead":
        print(f"note: proxy {data.proxy.id} was found dead at its last check: those accounts wait for it",
              file=sys.stderr)
    return 0
