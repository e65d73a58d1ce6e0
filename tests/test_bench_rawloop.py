"""The benchmark's raw reference loop (bench/_rawloop.py) does the work it stands for, on both drivers.

It is the floor tgfleet's pull+report is judged against: a loop that skipped a job, acknowledged one twice,
or let an ack through without its lease would flatter itself and every ratio to it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pgtest
import pytest

from bench import _rawloop

JOBS = 350  # not a multiple of the batch: the last lease is a short one


@pytest.fixture(params=pgtest.STORES)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "sqlite":
        yield "sqlite", str(tmp_path / "raw.sqlite3")
        return
    server: pgtest.PgServer = request.getfixturevalue("pg_server")
    name = server.create()
    try:
        yield "postgresql", server.url(name)
    finally:
        server.drop(name)


async def table_state(driver: str, where: str) -> tuple[int, int, int, int]:
    """(jobs, jobs done, result rows, distinct jobs among them), read apart from the loop's own check."""
    sql = ("SELECT (SELECT COUNT(*) FROM jobs), (SELECT COUNT(*) FROM jobs WHERE status = 2),"
           " (SELECT COUNT(*) FROM results), (SELECT COUNT(DISTINCT job_id) FROM results)")
    if driver == "sqlite":
        conn = sqlite3.connect(where)
        try:
            return conn.execute(sql).fetchone()
        finally:
            conn.close()
    pg = await asyncpg.connect(where)
    try:
        row = await pg.fetchrow(sql)
        return row[0], row[1], row[2], row[3]
    finally:
        await pg.close()


async def test_every_job_is_done_once_with_one_result_row_in_both_modes(target: tuple[str, str]) -> None:
    driver, where = target
    samples = await _rawloop.run(driver, where, jobs=JOBS, batch=100, batched_workers=4, single_workers=16,
                                 drains=2, single_window_s=60.0, timeout_s=60.0)
    assert [(s.mode, s.jobs) for s in samples] == [("batched", JOBS), ("batched", JOBS), ("single", JOBS)]
    assert all(s.seconds > 0 and s.cpu >= 0 for s in samples)
    assert await table_state(driver, where) == (JOBS, JOBS, JOBS, JOBS)


async def test_an_ack_without_its_lease_writes_nothing(target: tuple[str, str]) -> None:
    driver, where = target
    async with _rawloop.opened(driver, where, JOBS) as loop:
        await loop.reset()
        if isinstance(loop, _rawloop.PostgresLoop):
            await loop.connections(1)
        leased = await loop.lease(0, 5)
        assert len(leased) == 5
        with pytest.raises(RuntimeError, match="0 of 5 leases still held"):
            await loop.ack(0, [(job, tok + 1) for job, tok in leased])
        assert await loop.check() == (0, 5, 0, 0)  # none done, the five still leased, no result row
        assert await loop.ack(0, leased) == 5
        assert await loop.check() == (5, 0, 5, 5)
