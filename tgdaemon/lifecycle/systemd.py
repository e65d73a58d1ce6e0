"""sd_notify without a dependency: a datagram to $NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Send READY=1, STOPPING=1, WATCHDOG=1 or STATUS=…; False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    # Non-blocking: when systemd (or whatever reads NOTIFY_SOCKET) falls behind, a message is
    # dropped rather than freezing the event loop on a full socket queue.
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK) as sock:
        try:
            sock.sendto(message.encode(), address)
        except OSError:  # BlockingIOError included
            return False
    return True


def watchdog_interval() -> float | None:
    """Half of WatchdogSec, as systemd recommends; None when the watchdog is off."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000
