"""Where Telegram's data centres are, for the formats that keep only a DC id (Pyrogram, Telegram Desktop).

Telegram's published IPv4 addresses (the same table Pyrogram and the official apps start from); a
session's first connection learns the current ones from Telegram's config, as Telethon does.
"""

from __future__ import annotations

PORT = 443
PRODUCTION = {1: "149.154.175.53", 2: "149.154.167.51", 3: "149.154.175.100", 4: "149.154.167.91",
              5: "91.108.56.130"}
TEST = {1: "149.154.175.10", 2: "149.154.167.40", 3: "149.154.175.117"}


def address(dc_id: int, test_mode: bool = False) -> tuple[str, int] | None:
    """(host, port) of a DC, or None for an id Telegram has no such DC for."""
    host = (TEST if test_mode else PRODUCTION).get(dc_id)
    return None if host is None else (host, PORT)


def is_test(host: str) -> bool:
    """Whether a session's server is one of the test DCs (what a Pyrogram export writes as test_mode)."""
    return host in TEST.values()
