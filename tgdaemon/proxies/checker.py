"""The proxies' health checker: through each proxy to a Telegram data centre, gently, on a schedule.

A SOCKS5, SOCKS4 or HTTP proxy is asked, with its credentials, to open a TCP connection to
``proxies.check_target`` (Telegram's DC2 by default): the handshake and the CONNECT both have to
succeed, as they must for an account's client. An MTProxy speaks an obfuscated protocol no check can
replay without a session, so it is checked by a TCP connection to the proxy itself. The time to an open
connection is the latency: ``ok``, ``slow`` (over ``proxies.slow_ms``, still used) or ``dead`` (refused,
failed, wrong password, or no answer within ``proxies.timeout_seconds``).

What a check finds goes to the store in one transaction (``Store.record_proxy_check``): a dead proxy's
accounts wait in a cooldown with reason ``proxy`` until the next check can speak again
(``ProxiesConfig.hold_seconds``), renewed by every check that still finds it dead, and lifted by the
first that finds it answering. They are never moved to another proxy: an address that hops under one
auth key is how sessions get revoked. At most ``proxies.check_concurrency`` checks run at once, the
schedule's and the operator's (``tgdaemon proxies check``) together. On several nodes the schedule runs
on the leader only.

A check's error is one line made here, never the library's text as it stands: the proxy's secret is cut
out of it whatever it says.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from python_socks import ProxyType
from python_socks.async_.asyncio import Proxy

from tgdaemon.config import ProxiesConfig
from tgdaemon.errors import NotFound
from tgdaemon.logredact import REDACTED
from tgdaemon.proxies.url import remember_secret
from tgdaemon.store import ProxyCheck, ProxyChecked, ProxyTarget, Store
from tgdaemon.store.views import shown_proxy
from tgdaemon.timeutil import now, steady

log = logging.getLogger(__name__)
PROXY_TYPES = {"socks5": ProxyType.SOCKS5, "socks4": ProxyType.SOCKS4, "http": ProxyType.HTTP}
MAX_ERROR = 300


@dataclass(frozen=True, slots=True)
class Checked:
    proxy_id: int
    check: ProxyCheck
    recorded: ProxyChecked | None  # None: the proxy was removed while it was being checked


def describe(exc: BaseException, proxy: ProxyTarget, timeout: float) -> str:
    """One line for ``last_error``: what went wrong, without the proxy's secret in it."""
    if isinstance(exc, TimeoutError):
        text = f"no answer within {timeout:g} s"
    elif isinstance(exc, OSError) and exc.strerror:
        text = f"cannot connect: {exc.strerror}"
    else:
        text = " ".join(str(exc).split()) or type(exc).__name__
    if proxy.secret:
        text = text.replace(proxy.secret, REDACTED)
    return text if len(text) <= MAX_ERROR else text[:MAX_ERROR - 1] + "…"


class ProxyChecker:
    def __init__(self, cfg: ProxiesConfig, store: Store) -> None:
        self.cfg = cfg
        self.store = store
        self._slots = asyncio.Semaphore(cfg.check_concurrency)

    async def probe(self, proxy: ProxyTarget) -> ProxyCheck:
        """One connection through ``proxy``, closed at once; never raises (a failure is a finding)."""
        remember_secret(proxy.secret)
        host, port = self.cfg.target()
        async with self._slots:
            at, started = now(), steady()
            try:
                async with asyncio.timeout(self.cfg.timeout_seconds):
                    await self._connect(proxy, host, port)
            except Exception as exc:  # any failure means the same for the accounts behind it
                return ProxyCheck("dead", None, describe(exc, proxy, self.cfg.timeout_seconds), at)
            latency = (steady() - started) * 1000
        return ProxyCheck("slow" if latency > self.cfg.slow_ms else "ok", round(latency, 1), None, at)

    async def _connect(self, proxy: ProxyTarget, host: str, port: int) -> None:
        if proxy.scheme == "mtproxy":
            _, writer = await asyncio.open_connection(proxy.host, proxy.port)
            writer.close()
            await writer.wait_closed()
            return
        through = Proxy(PROXY_TYPES[proxy.scheme], proxy.host, proxy.port, username=proxy.username or None,
                        password=proxy.secret or None, rdns=True)
        sock = await through.connect(dest_host=host, dest_port=port, timeout=self.cfg.timeout_seconds)
        sock.close()

    async def check(self, ids: Sequence[int] | None = None) -> list[Checked]:
        """Check these proxies (None: every one) now, concurrently within the limit, and record each finding;
        NotFound (nothing checked) for an id that does not exist."""
        targets = await self.store.proxy_targets(ids)
        return list(await asyncio.gather(*(self._check_one(proxy) for proxy in targets)))

    async def _check_one(self, proxy: ProxyTarget) -> Checked:
        found = await self.probe(proxy)
        try:
            recorded = await self.store.record_proxy_check(proxy.id, found, hold_until=now() + self.cfg.hold_seconds())
        except NotFound:
            return Checked(proxy.id, found, None)
        if recorded.previous != found.state:
            name = f"proxy {proxy.id} ({shown_proxy(proxy.scheme, proxy.host, proxy.port)})"
            if found.state == "dead":
                log.warning("%s is dead: %s; %d accounts wait for it", name, found.error, recorded.held)
            else:
                log.info("%s is %s (%.0f ms)%s", name, found.state, found.latency_ms or 0,
                         f"; {recorded.released} accounts resume" if recorded.released else "")
        return Checked(proxy.id, found, recorded)

    async def run(self) -> None:
        """The leader's side task: every proxy, every ``check_interval_seconds``, from the start."""
        while True:
            await self.check()
            await asyncio.sleep(self.cfg.check_interval_seconds)
