"""The session formats operators hold, read into one shape for ``accounts import`` and written back by
``accounts export``: one module per format, ``detect`` picks the reader for a path.

Nothing here talks to Telegram or the daemon, and nothing here prints a key, a password or an api_hash:
a problem is one line naming the file and what is wrong with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tgdaemon.store import Device, mask_phone


@dataclass(frozen=True)
class Found:
    """One session read from the operator's files, with what its file says about it."""

    source: str  # the file, ``file:line`` or ``folder#n``: what the operator is told about it
    label: str
    kind: str  # telethon-session | telethon-string | pyrogram-session | pyrogram-string | tdata
    dc_id: int
    server: str
    port: int
    auth_key: bytes = field(repr=False)
    device: Device = Device()  # from a sidecar (or the Pyrogram file's api_id)
    phone: str | None = field(default=None, repr=False)  # +digits, from a sidecar
    password: str | None = field(default=None, repr=False)  # a 2FA password from a sidecar
    sidecar: str | None = None  # the sidecar's path, when there was one


class Broken(Exception):
    """A file (or line) that cannot be imported; the message is the one line the operator sees."""


def label_for(stem: str) -> str:
    """A label from a file name; account shops name files by the phone number, which would then show in
    full wherever labels do (listings, events, the dashboard), so such a name is masked like a phone."""
    digits = stem.removeprefix("+")
    if digits.isdigit() and 7 <= len(digits) <= 15:
        return mask_phone("+" + digits) or stem
    return stem
