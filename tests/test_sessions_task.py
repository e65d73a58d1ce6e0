"""The opt-in setup task terminate_other_sessions in a real daemon on the simulator, through the scheduler.

The simulated world gives each account up to three other sessions, and a share of the accounts a daemon
session made just now, which Telegram does not let end the others until it is 24 hours old
(FRESH_RESET_AUTHORISATION_FORBIDDEN): the task waits for exactly that moment, with no cooldown of the
account and no attempt spent. A frozen account's account methods refuse it: the task fails and the account
is disabled, as any FROZEN_* error does.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from tgdaemon.gateway.simworld import FRESH_SESSION_SHARE, initial_sessions

TASK = "terminate_other_sessions"
QUIET = {"accounts": 40, "seed": 3, "flood_wait_rate": 0.0, "peer_flood_rate": 0.0, "transient_rate": 0.0,
         "dead_fraction": 0.05, "frozen_fraction": 0.1}


async def settled(daemon: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every account's terminate task done, failed, waiting a day, or waiting on its disabled account;
    bounded in count and time."""
    store = daemon.runtime.store
    rows: list[dict[str, Any]] = []
    for _ in range(int(timeout / 0.05)):
        rows = [t for t in await store.setup_tasks(limit=10_000) if t["task_type"] == TASK]
        if rows and all(t["status"] in ("done", "failed") or t["disabled_at"] is not None  # a dead account's
                        or (t["status"] == "retry" and t["retry_at"] and t["retry_at"] > time.time() + 3600)
                        for t in rows):
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError(f"not settled: {sorted((t['account_id'], t['status']) for t in rows)}")


async def test_every_other_session_ends_and_a_fresh_session_waits_for_its_first_day(
        daemon_factory: Callable[..., Any]) -> None:
    async with daemon_factory(simulator=QUIET, setup={"enabled": True, "sessions": {"terminate_others": True}},
                              limits={"flood_wait_jitter_seconds": 0}) as (daemon, client):
        sim = daemon.gateway
        rows = {t["account_id"]: t for t in await settled(daemon)}
        store = daemon.runtime.store
        seen = {"done": 0, "waits": 0, "frozen": 0}
        for n, account in enumerate(sim.accounts, start=1):
            if account.is_probe:
                assert n not in rows  # probes get no setup tasks
                continue
            view = await store.get_account(n)
            if account.dead is not None:
                assert view["state"] == "disabled"
                continue
            task = rows[n]
            if sim.health(account.tg_user_id) == "frozen":
                assert (task["status"], task["last_error_code"]) == ("failed", "FROZEN_METHOD_INVALID")
                assert (view["state"], view["disabled_reason"]) == ("disabled", "FROZEN_METHOD_INVALID")
                seen["frozen"] += 1
                continue
            profile = sim.profile(account.tg_user_id)
            own = profile.sessions[0]
            assert own.hash == 0  # never ended
            made = initial_sessions(sim.cfg.seed, account, 0.0)
            if own.created > time.time() - 86400:  # a session made just now: it waits for its first day
                assert task["status"] == "retry" and task["attempts"] == 0, task  # no attempt spent
                assert task["retry_at"] == own.created + 86400
                assert "younger than 24 hours" in task["last_error"]
                assert view["state"] == "ready" and view["cooldown_until"] is None  # the account works on
                assert len(profile.sessions) == len(made)  # none ended
                seen["waits"] += len(made) > 1
            else:
                assert task["status"] == "done", task
                assert [s.hash for s in profile.sessions] == [0]  # the daemon's own, alone
                meta = json.loads(task["result_json"])["meta"]
                assert meta == ({"skipped": "no other sessions"} if len(made) == 1 else
                                {"ended": len(made) - 1, "sessions": meta["sessions"]})
                seen["done"] += 1
        assert seen["done"] and seen["waits"] and seen["frozen"], seen  # the world had every case
        assert FRESH_SESSION_SHARE < 0.5

        # `accounts retry` makes a waiting task due now: it reads the sessions again and waits again
        waiting = next(a for a, t in rows.items() if t["status"] == "retry")
        await client.request("POST", f"/accounts/{waiting}/retry")
        for _ in range(200):
            [again] = [t for t in await store.setup_tasks(account_id=waiting) if t["task_type"] == TASK]
            if again["updated_at"] != rows[waiting]["updated_at"] and again["retry_at"] is not None:
                break  # made due (retry_at cleared), then run again
            await asyncio.sleep(0.05)
        assert again["updated_at"] != rows[waiting]["updated_at"]  # it ran again
        assert again["status"] == "retry" and again["attempts"] == 0 and again["retry_at"] == rows[waiting]["retry_at"]
