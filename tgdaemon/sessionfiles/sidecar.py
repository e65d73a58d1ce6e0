"""The ``.json`` beside a ``.session`` file (``79001234567.session`` + ``79001234567.json``), as account
shops and session converters write it: the app and device the session was made with, the phone, and
often the 2FA password.

Keys are matched without regard to case, ``_`` or ``-`` (``app_id``, ``appId`` and ``APP-ID`` are one
key). Each field takes the first of its spellings found; every other key is ignored. A value is never
quoted in a problem: the file holds secrets.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tgdaemon.sessionfiles import Broken
from tgdaemon.store import Device

# field -> the spellings accepted, in the order they are looked for (normalized: lower case, no _ or -)
SPELLINGS: dict[str, tuple[str, ...]] = {
    "api_id": ("apiid", "appid"),
    "api_hash": ("apihash", "apphash"),
    "device_model": ("devicemodel", "device"),
    "system_version": ("systemversion", "sdk"),
    "app_version": ("appversion",),
    "lang_code": ("langcode", "langpack"),
    "system_lang_code": ("systemlangcode", "systemlangpack"),
    "phone": ("phone", "phonenumber"),
    "password": ("twofa", "2fa", "password"),
}
API_HASH = re.compile(r"^[0-9a-fA-F]{32}$")
PHONE = re.compile(r"^\+?[1-9]\d{6,14}$")
MAX_TEXT = 256
MAX_BYTES = 1024 * 1024  # an account shop's sidecar is a few hundred bytes


@dataclass(frozen=True)
class Sidecar:
    device: Device = Device()
    phone: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)


def path_for(session: Path) -> Path:
    return session.with_suffix(".json")


def read(path: Path) -> Sidecar:
    """The sidecar at ``path``; Broken (naming the file and the key) when it cannot be used."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise Broken(f"{path}: cannot read the sidecar: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise Broken(f"{path}: larger than {MAX_BYTES} bytes: not a session's sidecar")
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise Broken(f"{path}: not UTF-8 text: not a JSON sidecar") from None
    except json.JSONDecodeError as exc:  # its position only: the message could quote the file
        raise Broken(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise Broken(f"{path}: nested too deeply: not a session's sidecar") from None
    if not isinstance(data, dict):
        raise Broken(f"{path}: a JSON object was expected, not {type(data).__name__}")
    keys: dict[str, tuple[str, Any]] = {}
    for key, value in data.items():
        keys.setdefault(re.sub(r"[_\-\s]", "", str(key)).lower(), (str(key), value))
    found: dict[str, Any] = {}
    for name, spellings in SPELLINGS.items():
        for spelling in spellings:
            if spelling in keys:
                key, value = keys[spelling]
                if (checked := _check(path, name, key, value)) is not None:
                    found[name] = checked
                break
    phone, password = found.pop("phone", None), found.pop("password", None)
    return Sidecar(Device(**found), phone, password)


def _check(path: Path, name: str, key: str, value: Any) -> Any:
    """The value, checked for its field; None for an empty one (the field is then not set)."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # "app_id": 2040, "phone": 15551234567, "twoFA": 123456 are all common
    if not isinstance(value, str):
        raise Broken(f"{path}: {key}: text or a number expected, not {type(value).__name__}")
    if name == "password":
        if len(value) > MAX_TEXT or "\x00" in value:
            raise Broken(f"{path}: {key}: a 2FA password longer than {MAX_TEXT} characters, or with a NUL in it")
        return value
    text = value.strip()
    if name == "api_id":
        if not text.isdigit() or not 0 < int(text) < 2**31:
            raise Broken(f"{path}: {key}: not an api_id (a whole number)")
        return int(text)
    if name == "api_hash" and not API_HASH.match(text):
        raise Broken(f"{path}: {key}: not an api_hash (32 hexadecimal digits)")
    if name == "phone":
        text = re.sub(r"[\s\-().]", "", text)
        if not PHONE.match(text):
            raise Broken(f"{path}: {key}: not a phone number in international format")
        return "+" + text.removeprefix("+")
    if len(text) > MAX_TEXT or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise Broken(f"{path}: {key}: longer than {MAX_TEXT} characters, or holds control characters")
    return text or None
