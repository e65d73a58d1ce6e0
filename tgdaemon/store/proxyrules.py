"""What the proxies' store operations say, written once above the drivers: their refusals and their log rows
(tgdaemon/store/sqlite/proxies.py and tgdaemon/store/postgres/proxies.py run the same statements in their
dialects and hand these the rows)."""

from __future__ import annotations

from typing import Any

from tgdaemon.store.api import ProxyCheck
from tgdaemon.store.views import shown_proxy

PROXY = "proxy"  # the cooldown reason of an account whose proxy is dead


def named(row: Any) -> str:
    return f"proxy {row['id']} ({shown_proxy(row['scheme'], row['host'], row['port'])})"


def already(row: Any) -> str:
    return f"that proxy is already {named(row)}" + (f", labelled {row['label']!r}" if row["label"] else "")


def in_use(proxy_id: int, url: str, users: list[int]) -> str:
    return (f"proxy {proxy_id} ({url}) is used by {len(users)} account{'s' if len(users) != 1 else ''}"
            f" ({_some(users)}): give them another with `tgdaemon accounts set-proxy`, or remove it with --force,"
            " which leaves them with no proxy of their own")


def no_such_accounts(missing: list[int]) -> str:
    if len(missing) == 1:
        return f"account {missing[0]}: no such account; nothing changed"
    return f"accounts {_some(missing)}: no such accounts; nothing changed"


def _some(ids: list[int]) -> str:
    return ", ".join(map(str, ids[:10])) + (", …" if len(ids) > 10 else "")


def added_event(proxy_id: int, url: str, label: str) -> dict[str, Any]:
    return {"kind": "proxy.added", "message": f"proxy {proxy_id} added: {url}" + (f" ({label})" if label else ""),
            "data": {"proxy_id": proxy_id, "url": url, "label": label}}


def removed_events(proxy_id: int, url: str, users: list[int]) -> list[dict[str, Any]]:
    return [*({"kind": "account.proxy", "account_id": a, "message": f"proxy: none (proxy {proxy_id}, {url}, was removed)",
               "data": {"proxy_id": None, "was": proxy_id}} for a in users),
            {"kind": "proxy.removed", "message": f"proxy {proxy_id} removed: {url}"
             + (f"; {len(users)} accounts have no proxy of their own now" if users else ""),
             "data": {"proxy_id": proxy_id, "url": url, "accounts": len(users)}}]


def set_events(changed: list[int], was: dict[int, int | None], proxy_id: int | None, url: str) -> list[dict[str, Any]]:
    """One row per account whose proxy changed: an account's trail says which address it used when."""
    now_uses = "none" if proxy_id is None else f"proxy {proxy_id} ({url})"
    return [{"kind": "account.proxy", "account_id": a,
             "message": f"proxy: {now_uses} (was: {'none' if was[a] is None else f'proxy {was[a]}'})",
             "data": {"proxy_id": proxy_id, "was": was[a]}} for a in changed]


def check_events(proxy: Any, check: ProxyCheck, newly_held: list[int], released: list[int],
                 seconds: float) -> list[dict[str, Any]]:
    """The log rows of one check: the proxy's, when its state changed (a check that finds what the last one
    found writes none; the held accounts' deltas say the rest), and each account's that began or ended
    waiting for it."""
    name = named(proxy)
    events: list[dict[str, Any]] = []
    if check.state != proxy["state"]:
        if check.state == "dead":
            found = f"dead: {check.error}"
        else:
            found = check.state + (f", {check.latency_ms:.0f} ms" if check.latency_ms is not None else "")
        what = (f"; {len(newly_held)} accounts wait for it" if newly_held else "") + (
            f"; {len(released)} accounts resume" if released else "")
        events.append({"kind": "proxy.state", "message": f"{name} {found} (was {proxy['state']}){what}",
                       "data": {"proxy_id": proxy["id"], "url": shown_proxy(proxy["scheme"], proxy["host"],
                                                                            proxy["port"]),
                                "state": check.state, "was": proxy["state"], "latency_ms": check.latency_ms,
                                "error": check.error}})
    events += [{"kind": "account.cooldown", "account_id": a, "message": f"cooldown {seconds:.0f} s: {PROXY}"
                f" ({name} is dead)", "data": {"reason": PROXY, "seconds": round(seconds), "proxy_id": proxy["id"]}}
               for a in newly_held]
    events += [{"kind": "account.resumed", "account_id": a, "message": f"{name} answers again: its cooldown ended",
                "data": {"reason": PROXY, "proxy_id": proxy["id"]}} for a in released]
    return events
