"""``/metrics`` on the provider port: Prometheus text that a Prometheus parser reads, with the daemon's figures."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


async def scrape(daemon: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://{daemon.runtime.http_bound}/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_metrics_follow_the_fleet(running_daemon: Any) -> None:
    daemon, client = running_daemon
    before = await scrape(daemon)
    ready = before[("tgfleet_accounts", (("state", "ready"),))]
    assert ready == (await client.status())["accounts"]["ready"] > 0
    assert before[("tgfleet_accounts", (("state", "disabled"),))] == 0
    assert before[("tgfleet_uptime_seconds", ())] > 0

    await client.disable(1, "metrics test")
    store = daemon.runtime.store
    async with store.tx() as tx:
        await tx.execute("UPDATE accounts SET cooldown_until = ?, cooldown_reason = 'FLOOD_WAIT' WHERE id IN (2, 3)",
                         (time.time() + 600,))
    after = await scrape(daemon)
    assert after[("tgfleet_accounts", (("state", "disabled"),))] == 1
    assert after[("tgfleet_accounts", (("state", "cooldown"),))] == 2
    assert after[("tgfleet_accounts", (("state", "ready"),))] == ready - 3
    assert after[("tgfleet_cooldowns", (("reason", "FLOOD_WAIT"),))] == 2


async def test_metrics_count_setup_tasks(running_daemon: Any) -> None:
    daemon, client = running_daemon
    created = (await client.request("POST", "/setup/dispatch"))["created"]
    assert created > 0
    samples = await scrape(daemon)
    setup_total = sum(v for (name, labels), v in samples.items()
                      if name == "tgfleet_tasks" and ("kind", "setup") in labels)
    assert setup_total == created
