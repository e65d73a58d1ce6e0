"""The proxies view: the accounts' own proxies, with the health checker's last finding and who uses each.

Proxies are not in the stream (their state changes when the health checker runs, every few minutes): the
app asks ``GET /v1/proxies`` every few seconds. A proxy is shown as ``scheme://host:port``, as everywhere:
the API never sends its password or secret.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text

from tgdaemon.display import PROXY_STYLE, relative
from tgtui.model import parse_time
from tgtui.screens.base import FleetScreen
from tgtui.table import Column, Row, RowSet


def _state(row: Row, now: float) -> Text:
    return Text(row["state"], style=PROXY_STYLE.get(row["state"], ""))


def _age(row: Row, now: float) -> float:
    at = parse_time(row["checked_at"])
    return -1.0 if at is None else max(0.0, now - at)


def _checked(row: Row, now: float) -> str:
    age = _age(row, now)
    return "never" if age < 0 else relative(now - age, now)


def _latency(row: Row, now: float) -> str:
    return "" if row["latency_ms"] is None else f"{row['latency_ms']:.0f} ms"


PROXY_COLUMNS = [
    Column("id", "ID", 4, lambda r, n: str(r["id"]), sort=lambda r, n: r["id"], right=True),
    Column("url", "Proxy", 22, lambda r, n: r["url"], flex=True),
    Column("label", "Label", 10, lambda r, n: r["label"], drop=3),
    Column("state", "State", 9, _state),
    Column("latency", "Latency", 8, _latency, sort=lambda r, n: r["latency_ms"] or 0.0, right=True, drop=2),
    Column("checked", "Checked", 10, _checked, sort=_age, timed=True, right=True, drop=4),
    Column("accounts", "Accounts", 8, lambda r, n: str(r["accounts"]), sort=lambda r, n: r["accounts"], right=True),
    Column("waiting", "Waiting", 7, lambda r, n: str(r["held"]) if r["held"] else "", sort=lambda r, n: r["held"],
           right=True),
    Column("error", "Last error", 12, lambda r, n: r["last_error"] or "", flex=True, drop=1),
]


class ProxiesScreen(FleetScreen):
    EMPTY = "no proxies (add one with `tgdaemon proxies add URL`), or none match the filter"

    def make_rowset(self) -> RowSet:
        return RowSet(PROXY_COLUMNS)

    def rows(self) -> Iterable[Row]:
        return self.fleet.model.proxies.values()

    def rev(self) -> int:
        return self.fleet.model.proxies_rev
