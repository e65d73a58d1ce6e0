"""The multi-node tests' fixtures: ``node_fleet(**options)`` makes a ``harness.NodeFleet`` on a fresh database
of the session's PostgreSQL server (``pg_server``), closed (every process killed) and dropped afterwards.

Every test here is marked ``multinode``: ``pytest -m multinode`` runs them alone, ``-m 'not multinode'``
leaves them out; ``make test`` runs them with the rest. When a test fails, the tail of each node's log is
printed at teardown (pytest shows it under "Captured stdout teardown").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pgtest
import pytest

from multinode.harness import NodeFleet


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "multinode: several daemon processes on one PostgreSQL (tests/multinode)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "multinode" in item.nodeid.split("/"):
            item.add_marker(pytest.mark.multinode)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


FAILED = pytest.StashKey[bool]()


@pytest.fixture
def node_fleet(pg_server: pgtest.PgServer, request: pytest.FixtureRequest) -> Iterator[Callable[..., NodeFleet]]:
    made: list[NodeFleet] = []

    def make(**options: Any) -> NodeFleet:
        fleet = NodeFleet(pg_server, pg_server.create(), **options)
        made.append(fleet)
        return fleet

    try:
        yield make
    finally:
        for fleet in made:
            if request.node.stash.get(FAILED, False):
                print(fleet.logs())
            fleet.close()
            pg_server.drop(fleet.database)
