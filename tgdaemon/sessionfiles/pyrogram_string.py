"""Pyrogram string sessions: URL-safe base64 (unpadded) of a packed struct, in the three layouts
Pyrogram's ``Storage`` defines (pyrogram/storage/storage.py, memory_storage.py):

* ``>B?256sI?`` (dc id, test mode, auth key, 32-bit user id, is bot): 263 bytes, 351 characters;
* ``>B?256sQ?`` (the same with a 64-bit user id): 267 bytes, 356 characters;
* ``>BI?256sQ?`` (dc id, api id, test mode, auth key, user id, is bot): 271 bytes, 362 characters, since
  Pyrogram 2.0.

Pyrogram tells the old ones by the string's length, as done here.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass, field

from tgdaemon.sessionfiles import Broken

OLD = ">B?256sI?"
OLD_64 = ">B?256sQ?"
NEW = ">BI?256sQ?"
OLD_SIZE, OLD_64_SIZE = 351, 356  # Pyrogram's SESSION_STRING_SIZE and SESSION_STRING_SIZE_64


@dataclass(frozen=True)
class PyrogramSession:
    dc_id: int
    api_id: int | None
    test_mode: bool
    auth_key: bytes = field(repr=False)
    user_id: int | None
    is_bot: bool


def looks_like(text: str) -> bool:
    """A dc id of 1 to 5 in the first byte makes the string start with A or B; Telethon's start with 1."""
    return text[:1] in ("A", "B") and len(text) in (OLD_SIZE, OLD_64_SIZE, _chars(NEW))


def _chars(fmt: str) -> int:
    return -(-struct.calcsize(fmt) * 4 // 3)  # unpadded base64 of that many bytes


def read(text: str) -> PyrogramSession:
    layout = OLD if len(text) == OLD_SIZE else OLD_64 if len(text) == OLD_64_SIZE else NEW
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        values = struct.unpack(layout, raw)
    except (binascii.Error, ValueError, struct.error):
        raise Broken("not a Pyrogram string session") from None
    if layout == NEW:
        dc_id, api_id, test_mode, key, user_id, is_bot = values
    else:
        (dc_id, test_mode, key, user_id, is_bot), api_id = values, None
    if not any(key):
        raise Broken("a Pyrogram string session without an auth key")
    return PyrogramSession(dc_id, api_id or None, bool(test_mode), key, user_id or None, bool(is_bot))
