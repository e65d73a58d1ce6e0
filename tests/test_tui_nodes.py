"""The dashboard's Owner column, its Nodes view and the node in its header, against a real daemon subprocess.

On both stores: the data dir's SQLite file (one node, as always) and a
PostgreSQL database. The node's name comes from ``daemon.node_name``.
"""

from __future__ import annotations

import re

from daemon_proc import fleet
from test_tui import drawn, table_of, text_of, wait_until

from tgtui.app import FleetApp
from tgtui.screens.nodes import NodesScreen
from tgtui.widgets.header import FleetHeader

ACCOUNTS = 12


async def test_owner_column_nodes_view_and_the_connected_node(daemon_store: str | None) -> None:
    with fleet(store=daemon_store) as f:
        daemon = f.start(accounts=ACCOUNTS, env={"TGFLEET_DAEMON__NODE_NAME": "dash-node"})
        await daemon.await_ready()
        app = FleetApp(f.socket_path)
        async with app.run_test(size=(120, 30)) as pilot:
            table = table_of(app)
            await wait_until(pilot, lambda: len(table.rowset.rows) == ACCOUNTS and all(
                r.get("owner") == "dash-node" for r in table.rowset.rows), "every account owned by dash-node", daemon)
            assert "Owner" in "".join(s.text for s in table.render_line(0))
            assert "dash-node" in drawn(table, 1)
            header = app.screen.query_one(FleetHeader)
            await wait_until(pilot, lambda: text_of(header).startswith("dash-node │ Accounts "), "the node in the header", daemon)

            await pilot.press("left_square_bracket")  # backwards from accounts: the nodes view
            assert app.current_mode == "nodes" and isinstance(app.screen, NodesScreen)
            nodes = table_of(app)
            await wait_until(pilot, lambda: "dash-node" in nodes.rowset.index, "the node listed", daemon)
            line = drawn(nodes, "dash-node")
            assert "◂ connected" in line and " alive " in line and " leader " in line, line
            assert f" {ACCOUNTS} " in line and re.search(r" (just now|\d+s ago) ", line) and str(daemon.pid) in line, line
            await pilot.press("slash", *"state:dead", "enter")
            assert nodes.rowset.rows == []
        assert await daemon.astop() == 0, daemon.log()
