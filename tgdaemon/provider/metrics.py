"""``GET /metrics``: the daemon's state in Prometheus text format, read from the store at scrape time,
plus the counters the lease/report path keeps as it goes.

prometheus_client renders the text; the figures are gathered asynchronously
first, because its collectors are synchronous and the store is not.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from tgdaemon.runtime import RUNTIME, Runtime


class Snapshot:
    """A collector over figures gathered just before rendering."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self.metrics


async def gather(rt: Runtime) -> list[Metric]:
    accounts = GaugeMetricFamily("tgfleet_accounts", "Accounts by state.", labels=["state"])
    for state, count in (await rt.store.account_counts()).items():
        accounts.add_metric([state], count)
    tasks = GaugeMetricFamily("tgfleet_tasks", "Tasks by kind (setup, pulled) and status.", labels=["kind", "status"])
    for kind, counts in (await rt.store.task_counts()).items():
        for status, count in counts.items():
            tasks.add_metric([kind, status], count)
    cooldowns = GaugeMetricFamily("tgfleet_cooldowns", "Accounts in cooldown by reason.", labels=["reason"])
    for reason, count in await rt.store.cooldowns_by_reason():
        cooldowns.add_metric([reason or "unknown"], count)
    uptime = GaugeMetricFamily("tgfleet_uptime_seconds", "Seconds since the daemon started.")
    uptime.add_metric([], rt.uptime())
    subscribers = GaugeMetricFamily("tgfleet_stream_subscribers", "Live stream clients connected.")
    subscribers.add_metric([], rt.hub.subscribers)
    return [accounts, tasks, cooldowns, uptime, subscribers]


async def metrics(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot(await gather(rt)))  # type: ignore[arg-type]
    # counters of the lease/report path: leased, reports by outcome, expiries, latency
    registry.register(rt.leases.metrics.registry)  # type: ignore[arg-type]
    return web.Response(body=generate_latest(registry), headers={"Content-Type": "text/plain; version=0.0.4"})
