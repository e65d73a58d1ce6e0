"""The events view: the daemon's audit trail as it happens, newest first."""

from __future__ import annotations

from collections.abc import Iterable

from tgtui.fmt import ago
from tgtui.screens.base import FleetScreen
from tgtui.table import Column, Row, RowSet
from tgtui.widgets.table import LineTable


def _ref(field: str) -> Column:
    return Column(field.split("_")[0], field.split("_")[0].title(), 7,
                  lambda r, n: str(r[field]) if r[field] is not None else "",
                  sort=lambda r, n: r[field] or 0, right=True, drop=2)


EVENT_COLUMNS = [
    Column("time", "When", 10, lambda r, n: ago(r["at"], n), sort=lambda r, n: r["id"]),
    Column("kind", "Kind", 20, lambda r, n: r["kind"]),
    _ref("account_id"),
    _ref("quota_id"),
    Column("message", "Message", 20, lambda r, n: r["message"], flex=True),
]


class EventsScreen(FleetScreen):
    EMPTY = "no events yet (or none match the filter)"

    def make_rowset(self) -> RowSet:
        return RowSet(EVENT_COLUMNS, desc=True)

    def rows(self) -> Iterable[Row]:
        return self.fleet.model.events

    def rev(self) -> int:
        return self.fleet.model.events_rev

    def on_line_table_chosen(self, event: LineTable.Chosen) -> None:
        row = self.rowset.rows[self.rowset.index[event.key]]
        if row["account_id"] is not None:
            self.fleet.open_account(row["account_id"])
        elif row["quota_id"] is not None:
            self.fleet.open_quota(row["quota_id"])
