"""How a stored row is shown: one function per kind, shared by both drivers.

A driver's row (``sqlite3.Row``, ``asyncpg.Record``) is a mapping by column
name; these take any such mapping and give what the APIs send, so the two
drivers cannot drift apart in what an account, a quota or an event looks like.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from collections.abc import Iterable
from typing import Annotated, Any

import msgspec

from tgdaemon.store.api import DEVICE_FIELDS, ClientParams, Device, ProxyTarget, Row
from tgdaemon.timeutil import iso, now

# Named once, in the wire types; the drivers take them from here (``X as X``: a re-export).
from tgdaemon.wire import ACTIONS as ACTIONS
from tgdaemon.wire import SORT_KEYS as SORT_KEYS
from tgdaemon.wire import STATES as STATES
from tgdaemon.wire import quota_state

UNCHECKED = "unchecked"  # the listing's health filter for accounts never checked (health NULL)


def mask_phone(phone: str | None) -> str | None:
    """Keep the country code's first digits and the last two: enough to tell accounts apart."""
    if not phone:
        return None
    if len(phone) <= 6:
        return "*" * len(phone)
    return phone[:4] + "*" * (len(phone) - 6) + phone[-2:]


def mask_secret(value: str | None) -> str | None:
    """An api_hash as shown anywhere: its first four characters, enough to tell two apart, never the rest."""
    if not value:
        return None
    return ("…" if len(value) <= 8 else value[:4] + "…")


# What ``str.strip()`` removes (every character whose ``isspace()`` is true): the drivers trim an account's
# name in SQL by this, to the same result as ``account_view``.
NAME_STRIP = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
              "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")


def account_view(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "label": row["label"],
        "phone_masked": mask_phone(row["phone"]),
        "name": f"{row['first_name']} {row['last_name']}".strip(),
        "state": row["state"],
        "is_probe": bool(row["is_probe"]),
        "is_active": bool(row["is_active"]),
        "executor": row["executor"],
        "cooldown_until": iso(row["cooldown_until"]),
        "cooldown_reason": row["cooldown_reason"],
        "disabled_at": iso(row["disabled_at"]),
        "disabled_reason": row["disabled_reason"],
        "setup": {"done": row["setup_done"], "total": row["setup_total"]},
        "last_error_code": row["last_error_code"],
        "last_ok_at": iso(row["last_ok_at"]),
        "owner": row["owner"],
        "pinned_node": row["pinned_node"],
        "health": row["health"],
        "health_checked_at": iso(row["health_checked_at"]),
        "health_detail": None if row["health_detail"] is None else json.loads(row["health_detail"]),
        "proxy_id": row["proxy_id"],
        "proxy": None if row["proxy_scheme"] is None else shown_proxy(row["proxy_scheme"], row["proxy_host"],
                                                                      row["proxy_port"]),
    }


Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


def encode_cursor(value: Any, account_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([value, account_id]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, account_id = msgspec.json.decode(raw, type=tuple[str | Int64 | float, Int64])
    except (ValueError, msgspec.DecodeError):
        raise ValueError("cursor: not a cursor this daemon issued") from None
    return value, account_id


def event_view(row: Row) -> dict[str, Any]:
    data = row["data_json"] if "data_json" in row.keys() else None
    return {
        "id": row["id"], "at": iso(row["at"]), "kind": row["kind"], "account_id": row["account_id"],
        "task_id": row["task_id"], "quota_id": row["quota_id"], "message": row["message"],
        "data": json.loads(data) if data is not None else row["data"],
    }


MEASUREMENT_FIELDS = ("observed_at", "post_id", "views", "forwards", "replies", "reactions", "subscribers", "task_id")
# The export's formats, each row as ``measurement_rows`` writes it. The drivers write the same bytes in SQL
# for the rows SQL can (integer values, a time from 1970 to 9999): the rest go through these.
EXPORT_FORMATS = ("csv", "json")
_json = msgspec.json.Encoder()


def measurement_rows(fmt: str, rows: Iterable[tuple[Any, ...]]) -> bytes:
    """Rows in ``MEASUREMENT_FIELDS`` order (the time already ISO) as the export writes them: CSV lines as
    the csv module writes them (CRLF, a cell quoted only where it must be), or JSON objects joined by
    commas (the inside of the export's array)."""
    if fmt == "csv":
        buf = io.StringIO()
        csv.writer(buf).writerows(rows)
        return buf.getvalue().encode()
    return _json.encode([dict(zip(MEASUREMENT_FIELDS, r)) for r in rows])[1:-1]


CSV_HEADER = measurement_rows("csv", [MEASUREMENT_FIELDS])


def quota_view(row: Row) -> dict[str, Any]:
    """``state`` is derived here, as of now, for both drivers alike (``wire.quota_state``)."""
    left = row["quantity_left"] if row["quantity_left"] is not None else row["orders_left"]
    return {
        "id": row["id"], "name": row["name"], "action": row["action"], "target": row["target"],
        "last_n_posts": row["last_n_posts"], "quantity_total": row["quantity_total"],
        "quantity_left": row["quantity_left"], "orders_left": row["orders_left"], "per_call": row["per_call"],
        "interval_seconds": row["interval_seconds"], "next_run_at": iso(row["next_run_at"]),
        "expires_at": iso(row["expires_at"]), "paused": bool(row["paused"]),
        "state": quota_state(bool(row["paused"]), row["expires_at"], left, now()),
        "inspection_ok": None if row["inspection_ok"] is None else bool(row["inspection_ok"]),
        "inspection_error": row["inspection_error"], "inspected_at": iso(row["inspection_at"]),
        "peer_id": row["peer_id"], "title": row["title"], "last_error": row["last_error"],
        "measurements": row["measurements"], "created_at": iso(row["created_at"]),
    }


def quota_expired(quota_id: int, expires_at: float, paused: bool) -> str:
    """Why an expired quota is neither paused nor resumed: the same words from both drivers."""
    return f"quota {quota_id} expired at {iso(expires_at)}: there is nothing to {'pause' if paused else 'resume'}"


NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{1,31}$")


RESERVED_NAMES = frozenset({"local"})  # `local` is the daemon's own executor in accounts.executor


def provider_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a provider, or None when it can; shared by the API and the CLI."""
    if name in RESERVED_NAMES:
        return f"provider name {name!r} is reserved for the daemon's own executor"
    if not NAME_RE.fullmatch(name):
        return (f"provider name {name!r}: 2 to 32 characters, a lowercase letter first,"
                " then lowercase letters, digits, '_' or '-'")
    return None


def provider_view(row: Row) -> dict[str, Any]:
    """What the APIs show of a provider: never its token hash."""
    return {"name": row["name"], "created_at": iso(row["created_at"]), "last_seen_at": iso(row["last_seen_at"]),
            "revoked_at": iso(row["revoked_at"])}


def client_params(r: Any) -> ClientParams:
    """An account's device and proxy from its row (none: the defaults, as for an account not there)."""
    if r is None:
        return ClientParams()
    device = Device(r["api_id"], r["api_hash"], r["device_model"], r["system_version"], r["app_version"],
                    r["lang_code"], r["system_lang_code"])
    proxy = None if r["proxy_id"] is None else ProxyTarget(
        r["proxy_id"], r["scheme"], r["host"], r["port"], r["username"], r["secret"] or "", r["state"])
    return ClientParams(device, proxy)


def device_view(device: Device) -> dict[str, Any]:
    """A device as the APIs show it: every field, the api_hash masked (``api_hash_masked``)."""
    view: dict[str, Any] = {name: getattr(device, name) for name in DEVICE_FIELDS}
    view["api_hash_masked"] = mask_secret(view.pop("api_hash"))
    return view


def effective_device(own: Device, default: Device) -> Device:
    """What an account's client presents: each of its own fields, else the default's (as the gateway does)."""
    return Device(*(getattr(own, name) if getattr(own, name) is not None else getattr(default, name)
                    for name in DEVICE_FIELDS))
def shown_proxy(scheme: str, host: str, port: int) -> str:
    """``scheme://host:port``: all of a proxy anyone is shown (``tgdaemon.proxies.url.shown``, whose rule
    the drivers also write in SQL for the account listing)."""
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def proxy_view(row: Row) -> dict[str, Any]:
    """A proxy as the APIs show it: never its username's password or its MTProxy secret (not even read)."""
    return {"id": row["id"], "url": shown_proxy(row["scheme"], row["host"], row["port"]), "label": row["label"],
            "state": row["state"], "latency_ms": None if row["latency_ms"] is None else round(row["latency_ms"], 1),
            "checked_at": iso(row["checked_at"]), "last_error": row["last_error"],
            "created_at": iso(row["created_at"]), "accounts": row["accounts"], "held": row["held"]}
