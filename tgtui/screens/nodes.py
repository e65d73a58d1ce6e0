"""The nodes view: the daemons that share the fleet, alive or not, the leader, and how many accounts each holds.

Nodes are not in the stream (a heartbeat every few seconds per node would
flood it): the app asks ``GET /v1/nodes`` every few seconds instead.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text

from tgdaemon.display import NODE_STYLE, node_condition, relative
from tgtui.model import FleetModel, heartbeat_age
from tgtui.screens.base import FleetScreen
from tgtui.table import Column, Row, RowSet


def _state(row: Row, now: float) -> Text:
    state = node_condition(row["alive"], row["stopped_at"])
    return Text(state, style=NODE_STYLE[state])


def _heartbeat(row: Row, now: float) -> str:
    return relative(now - heartbeat_age(row, now), now)


def node_columns(model: FleetModel) -> list[Column]:
    def name(row: Row, now: float) -> Text:
        return Text.assemble(row["name"], (" ◂ connected", "dim") if row["name"] == model.node else "")

    return [
        Column("name", "Name", 14, name, sort=lambda r, n: r["name"], flex=True, cached=False),  # ◂ connected
        Column("state", "State", 7, _state),
        Column("leader", "Leader", 6, lambda r, n: "leader" if r["leader"] else ""),
        Column("accounts", "Accounts", 8, lambda r, n: str(r["accounts"]), sort=lambda r, n: r["accounts"],
               right=True),
        Column("max", "Max", 6, lambda r, n: str(r["max_accounts"]) if r["max_accounts"] else "",
               sort=lambda r, n: r["max_accounts"], right=True, drop=3),
        Column("heartbeat", "Heartbeat", 10, _heartbeat, sort=heartbeat_age, timed=True, right=True),
        Column("host", "Host", 12, lambda r, n: r["host"], drop=2),
        Column("pid", "PID", 7, lambda r, n: str(r["pid"]), sort=lambda r, n: r["pid"], right=True, drop=4),
        Column("version", "Version", 7, lambda r, n: r["version"], drop=5),
        Column("http", "Provider API", 15, lambda r, n: r["http"] or "", drop=1),
    ]


class NodesScreen(FleetScreen):
    EMPTY = "no nodes listed yet"

    def make_rowset(self) -> RowSet:
        return RowSet(node_columns(self.fleet.model), key="name")

    def rows(self) -> Iterable[Row]:
        return self.fleet.model.nodes.values()

    def rev(self) -> int:
        return self.fleet.model.nodes_rev
