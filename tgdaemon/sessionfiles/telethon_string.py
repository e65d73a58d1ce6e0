"""Telethon string sessions: ``1`` then URL-safe base64 of (dc id, IPv4 or IPv6 address, port, 256-byte
auth key), as ``telethon.sessions.StringSession`` writes them; decoded by that class itself."""

from __future__ import annotations

from tgdaemon.sessionfiles import Broken


def looks_like(text: str) -> bool:
    return text.startswith("1")


def read(text: str) -> tuple[int, str, int, bytes]:
    """(dc id, server, port, auth key) of one string session."""
    from telethon.sessions import (
        StringSession,  # only here: the admin commands start faster without Telethon
    )

    try:
        session = StringSession(text)
    except Exception:  # binascii, struct, ipaddress errors alike: the string is not one
        raise Broken("not a Telethon string session") from None
    if session.auth_key is None or len(session.auth_key.key or b"") != 256 or not any(session.auth_key.key):
        raise Broken("a Telethon string session without an auth key")
    return session.dc_id, session.server_address, session.port, session.auth_key.key


def write(dc_id: int, server: str, port: int, key: bytes) -> str:
    from telethon.crypto import AuthKey
    from telethon.sessions import StringSession

    session = StringSession()
    session.set_dc(dc_id, server, port)
    session.auth_key = AuthKey(key)
    return str(session.save())
