"""SIGTERM and SIGINT ask for a graceful stop; a second one while stopping is ignored, not fatal.
SIGHUP asks for a reload (the provider port's certificate), never a stop: its default would end the process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def on_stop(callback: Callable[[], None], *, reload: Callable[[], None]) -> Iterator[None]:
    loop = asyncio.get_running_loop()

    def handler(signum: int) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        callback()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, handler, sig)
    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        yield
    finally:
        for sig in (*STOP_SIGNALS, signal.SIGHUP):
            loop.remove_signal_handler(sig)
