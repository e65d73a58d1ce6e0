"""Telegram Desktop's ``tdata`` folder, read from its public description (Telegram Desktop's
storage_file_utilities, storage_domain and main_account sources): no Qt, no third-party tdata library.

* Every file is ``TDF$``, a 4-byte app version, the data, and an MD5 of (data, its length, the version,
  ``TDF$``); a file ``X`` is stored as ``Xs`` (or ``X1``/``X0`` from older versions). The data is a Qt
  data stream: big-endian integers, a byte array as its 32-bit length then its bytes.
* ``key_datas`` holds a salt, the local key encrypted with the passcode key, and the account list
  encrypted with the local key. The passcode key is PBKDF2-HMAC-SHA512 of SHA-512(salt, passcode, salt)
  with the salt, 1 round without a passcode or 100,000 with one, 256 bytes long.
* Encrypted parts are a 16-byte message key (the first 16 bytes of the SHA-1 of the plain text) then
  AES-256-IGE, with the key and IV made from the message key and a 256-byte key as MTProto 1.0 did; the
  plain text starts with its own length (little-endian) and is padded to 16 bytes.
* Account ``i`` (``data`` for the first, ``data#2``... for the others) is the file named by the first 8
  bytes of the MD5 of that name, as 16 hex digits low nibble first (``D877F783D5D3EF8C`` for ``data``),
  holding block 0x4B: the MTP authorization, the user id, the main DC id and the (DC id, 256-byte auth
  key) pairs; the main DC's key is the session.

Only the current layout (``key_datas``, Telegram Desktop 2.x and later) is read; older folders are
reported as such.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from pathlib import Path

from tgdaemon.sessionfiles import Broken

MAGIC = b"TDF$"
SUFFIXES = ("s", "1", "0")
KEY_FILE = "key_data"
MAX_ACCOUNTS = 6  # Telegram Desktop's limit (3, or 6 with Premium)
MAX_FILE = 16 * 1024 * 1024  # the files read here are a few kilobytes
STRONG_ITERATIONS = 100_000
MTP_AUTHORIZATION = 0x4B
WIDE_IDS = 0xFFFFFFFF  # both legacy fields all ones: 64-bit ids follow
KEY_SIZE = 256


@dataclass(frozen=True)
class TdataAccount:
    index: int  # Telegram Desktop's account slot, 0 for the first
    user_id: int
    dc_id: int
    auth_key: bytes = field(repr=False)


class WrongKey(Broken):
    """The data did not decrypt: a wrong passcode, or a damaged file."""


class Stream:
    """Reads a Qt data stream (version 5.1: big-endian); running short is Broken, never an IndexError."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def raw(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise Broken(f"{self.what}: cut short")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u32(self) -> int:
        return int(struct.unpack(">I", self.raw(4))[0])

    def i32(self) -> int:
        return int(struct.unpack(">i", self.raw(4))[0])

    def u64(self) -> int:
        return int(struct.unpack(">Q", self.raw(8))[0])

    def bytearray(self) -> bytes:
        n = self.u32()
        return b"" if n == 0xFFFFFFFF else self.raw(n)

    def left(self) -> int:
        return len(self.data) - self.pos


def find(path: Path) -> Path | None:
    """The tdata folder at ``path``: the folder itself, or the ``tdata`` inside a Telegram Desktop folder."""
    for folder in (path, path / "tdata"):
        if any((folder / (KEY_FILE + s)).is_file() for s in SUFFIXES):
            return folder
    return None


def data_name(index: int) -> str:
    return "data" if index == 0 else f"data#{index + 1}"


def file_part(name: str) -> str:
    """A data name's file name: 16 hex digits of its MD5's first 8 bytes (little-endian), low nibble first."""
    value = int.from_bytes(hashlib.md5(name.encode()).digest()[:8], "little")
    return "".join("0123456789ABCDEF"[(value >> (4 * i)) & 0xF] for i in range(16))


def read_file(folder: Path, name: str) -> bytes:
    """The data of the first of ``name``'s stored copies whose checksum holds."""
    problem = f"{folder}: no {name}s file"
    for suffix in SUFFIXES:
        path = folder / (name + suffix)
        try:
            if not path.is_file():
                continue
            if path.stat().st_size > MAX_FILE:
                problem = f"{path}: larger than {MAX_FILE} bytes: not a Telegram Desktop file"
                continue
            raw = path.read_bytes()
        except OSError as exc:
            problem = f"{path}: cannot read it: {exc.strerror}"
            continue
        if len(raw) < 24 or raw[:4] != MAGIC:
            problem = f"{path}: not a Telegram Desktop file (no TDF$ header), or cut short"
            continue
        version, data, digest = raw[4:8], raw[8:-16], raw[-16:]
        if hashlib.md5(data + struct.pack("<I", len(data)) + version + MAGIC).digest() != digest:
            problem = f"{path}: damaged (its checksum does not match), or cut short"
            continue
        return data
    raise Broken(problem)


def local_key(salt: bytes, passcode: bytes) -> bytes:
    digest = hashlib.sha512(salt + passcode + salt).digest()
    return hashlib.pbkdf2_hmac("sha512", digest, salt, STRONG_ITERATIONS if passcode else 1, KEY_SIZE)


def aes_key_iv(key: bytes, msg_key: bytes) -> tuple[bytes, bytes]:
    """MTProto 1.0's key and IV from an auth key and a message key, as local storage uses it (x = 8)."""
    x = 8
    a = hashlib.sha1(msg_key + key[x:x + 32]).digest()
    b = hashlib.sha1(key[x + 32:x + 48] + msg_key + key[x + 48:x + 64]).digest()
    c = hashlib.sha1(key[x + 64:x + 96] + msg_key).digest()
    d = hashlib.sha1(msg_key + key[x + 96:x + 128]).digest()
    return a[:8] + b[8:20] + c[4:16], a[8:20] + b[:8] + c[16:20] + d[:8]


def decrypt(encrypted: bytes, key: bytes, what: str) -> Stream:
    """An encrypted part as a stream past its length field; WrongKey when the key does not open it."""
    from telethon.crypto import (
        AES,  # only here: the admin commands start faster without Telethon
    )

    if len(encrypted) <= 16 or len(encrypted) % 16:
        raise Broken(f"{what}: an encrypted part of a wrong size")
    msg_key, body = encrypted[:16], encrypted[16:]
    plain = AES.decrypt_ige(body, *aes_key_iv(key, msg_key))
    if hashlib.sha1(plain).digest()[:16] != msg_key:
        raise WrongKey(what)
    size = int.from_bytes(plain[:4], "little")
    if size > len(plain) or size <= len(body) - 16 or size < 4:
        raise Broken(f"{what}: an encrypted part of a wrong length")
    stream = Stream(plain[:size], what)
    stream.pos = 4
    return stream


def read(folder: Path, passcode: str | None) -> tuple[list[TdataAccount], list[str]]:
    """The folder's signed-in accounts, and a problem line for each account slot that cannot be read."""
    keys = Stream(read_file(folder, KEY_FILE), f"{folder}/{KEY_FILE}s")
    salt, key_encrypted, info_encrypted = keys.bytearray(), keys.bytearray(), keys.bytearray()
    try:
        inner = decrypt(key_encrypted, local_key(salt, (passcode or "").encode()), keys.what)
    except WrongKey:
        raise Broken(f"{folder}: wrong passcode" if passcode else
                     f"{folder}: it has a local passcode: pass --passcode") from None
    local = inner.raw(KEY_SIZE)
    try:
        info = decrypt(info_encrypted, local, keys.what)
    except WrongKey:
        raise Broken(f"{keys.what}: damaged (its account list does not decrypt)") from None
    count = info.i32()
    if not 0 < count <= MAX_ACCOUNTS:
        raise Broken(f"{folder}: no signed-in account in it" if count == 0 else
                     f"{keys.what}: damaged (it lists {count} accounts)")
    accounts, problems = [], []
    for index in sorted({info.i32() for _ in range(count)}):
        try:
            if not 0 <= index < MAX_ACCOUNTS:
                raise Broken(f"{keys.what}: damaged (an account slot {index})")
            accounts.append(_account(folder, index, local))
        except Broken as exc:
            problems.append(str(exc))
    return accounts, problems


def _account(folder: Path, index: int, local: bytes) -> TdataAccount:
    name = file_part(data_name(index))
    what = f"{folder}/{name}s"
    outer = Stream(read_file(folder, name), what)
    try:
        mtp = decrypt(outer.bytearray(), local, what)
    except WrongKey:
        raise Broken(f"{what}: damaged (it does not decrypt with the folder's key)") from None
    if (block := mtp.u32()) != MTP_AUTHORIZATION:
        raise Broken(f"{what}: not an MTP authorization (block {block:#x})")
    auth = Stream(mtp.bytearray(), what)
    legacy_user, legacy_dc = auth.u32(), auth.u32()
    if legacy_user == WIDE_IDS and legacy_dc == WIDE_IDS:
        user_id, main_dc = auth.u64(), auth.i32()
    else:
        user_id, main_dc = legacy_user, struct.unpack(">i", struct.pack(">I", legacy_dc))[0]
    count = auth.i32()
    if not 0 <= count <= auth.left() // (4 + KEY_SIZE):
        raise Broken(f"{what}: damaged (it lists {count} keys)")
    keys = dict((auth.i32(), auth.raw(KEY_SIZE)) for _ in range(count))
    key = keys.get(main_dc)
    if key is None or not any(key):
        raise Broken(f"{what}: no auth key for its main DC {main_dc} (signed out?)")
    return TdataAccount(index, user_id, main_dc, key)
