"""The last resort that makes a stopping daemon actually exit.

aiosqlite runs each connection in a non-daemon thread. If one of them is
stuck (a system call on a failing disk) the interpreter waits for it at exit
for ever, still holding the data-dir lock, and systemd's ``Restart=`` never
fires. ``arm`` starts a daemon thread, which never itself keeps the process
alive, that ends the process with ``os._exit`` once a deadline passes; the
kernel then releases the lock. ``after_run`` is the check once
``asyncio.run`` has returned: threads that are still there get a short grace
to finish, then the same end.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable

log = logging.getLogger("tgdaemon.shutdown")
AFTER_RUN_GRACE_SECONDS = 2.0


def _lingering() -> list[threading.Thread]:
    return [t for t in threading.enumerate()
            if t is not threading.current_thread() and t is not threading.main_thread()
            and not t.daemon and t.is_alive()]


def _exit_now(code: int, why: str) -> None:
    log.error("%s; exiting with code %d anyway", why, code)
    for stream in (sys.stderr, sys.stdout):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def arm(seconds: float, code: Callable[[], int], why: str | None = None) -> None:
    """End the process ``seconds`` from now unless it has exited by then (``code()`` is read at that moment)."""
    deadline = time.monotonic() + seconds

    def guard() -> None:
        time.sleep(max(0.0, deadline - time.monotonic()))
        names = ", ".join(t.name for t in _lingering()) or "none"
        _exit_now(code(), why or f"shutdown did not complete within {seconds:.0f} s (threads still running: {names})")

    threading.Thread(target=guard, name="tgdaemon exit guard", daemon=True).start()


def after_run(code: int, grace: float = AFTER_RUN_GRACE_SECONDS) -> None:
    """Once the event loop is gone: wait ``grace`` at most for leftover threads, then exit without them."""
    deadline = time.monotonic() + grace
    for thread in _lingering():
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    if left := _lingering():
        # The caller may still print its own last line: a daemon thread ends the process just after.
        arm(0.5, lambda: code, f"shutdown: {len(left)} thread(s) still running after the event loop stopped"
                               f" ({', '.join(t.name for t in left)})")
