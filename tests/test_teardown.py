"""The daemon's stop as one stack (lifecycle.teardown): reverse order, every step run, every failure one line."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tgdaemon.lifecycle.teardown import Teardown


async def test_every_step_runs_in_reverse_even_when_some_fail_or_hang(caplog: pytest.LogCaptureFixture) -> None:
    ran: list[str] = []
    given: list[float] = []
    teardown = Teardown()

    async def final(seconds: float) -> None:
        given.append(seconds)
        ran.append("store")
        raise OSError("disk gone")

    async def ok(name: str) -> None:
        ran.append(name)

    async def fails() -> None:
        ran.append("gateway")
        raise RuntimeError("gateway would not close")

    async def hangs() -> None:
        ran.append("sites")
        await asyncio.Event().wait()

    def release() -> None:
        ran.append("lock")
        raise PermissionError("lock file")

    teardown.now("releasing the lock", release)
    teardown.final("closing the database", final)
    teardown.step("closing the gateway", fails, 0.2)
    teardown.step("writing the last reports", lambda: ok("leases"), 0.1)
    teardown.step("closing the HTTP sites", hangs, 0.1)
    teardown.now("removing the socket", lambda: ran.append("socket"))
    with caplog.at_level(logging.WARNING, logger="tgdaemon.shutdown"):
        await teardown.run(budget=2.0, reserve=0.5)

    assert ran == ["socket", "sites", "leases", "gateway", "store", "lock"]
    assert given and given[0] >= 0.5  # the hung step never took the store's reserve
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "shutdown: closing the HTTP sites did not finish within 0.2 s; going on without it",
        "shutdown: closing the gateway failed (gateway would not close); going on",
        "shutdown: closing the database failed (disk gone); going on",
        "shutdown: releasing the lock failed (lock file); going on",
    ]
    assert not any(r.exc_info for r in caplog.records)  # expected failures: no traceback


async def test_a_start_that_failed_half_way_undoes_only_what_it_did() -> None:
    ran: list[str] = []
    teardown = Teardown()

    async def close_gateway() -> None:
        ran.append("gateway")

    teardown.now("releasing the lock", lambda: ran.append("lock"))
    teardown.step("closing the gateway", close_gateway, 0.15)
    # the start failed here: nothing after the gateway was registered, so nothing else is undone
    await teardown.run(budget=1.0, reserve=0.2)
    assert ran == ["gateway", "lock"]
