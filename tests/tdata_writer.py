"""A Telegram Desktop ``tdata`` writer for the import tests, written from the format's public description
(Telegram Desktop's storage_file_utilities, storage_domain and main_account sources), apart from the
reader in ``tgdaemon/sessionfiles/tdata.py``: its own Qt data stream, key derivation, message keys and
AES-IGE (over the ``cryptography`` package's AES, not Telethon's), so a mistake made twice in one
place cannot pass. It also writes the damaged variants the tests feed the reader.

What Telegram Desktop writes, and so what this writes:

* ``key_datas``: TDF file of three byte arrays: a 32-byte salt, the 256-byte local key encrypted with the
  passcode key, the account list (count, then each index) encrypted with the local key;
* per account ``i`` (data name ``data``, ``data#2``, ...): the TDF file named by ToFilePart(md5(name))
  with one byte array: the encrypted (block 0x4B, byte array of the MTP authorization);
* the MTP authorization: (0xFFFFFFFF, 0xFFFFFFFF, u64 user id, i32 main dc) for wide ids, or the legacy
  (i32 user id, i32 main dc); then i32 count and (i32 dc, 256 raw bytes) for the keys, and the same for
  the keys to destroy.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

APP_VERSION = 5_006_001  # what the file header says wrote it: any version reads the same


def qbytes(data: bytes) -> bytes:
    """QDataStream << QByteArray: big-endian 32-bit length, then the bytes."""
    return struct.pack(">I", len(data)) + data


def tdf(data: bytes, version: int = APP_VERSION) -> bytes:
    v = struct.pack("<I", version)
    return b"TDF$" + v + data + hashlib.md5(data + struct.pack("<I", len(data)) + v + b"TDF$").digest()


def ige_encrypt(plain: bytes, key: bytes, iv: bytes) -> bytes:
    """AES-256-IGE as OpenSSL (and so MTProto) does it: iv = (previous cipher block, previous plain block)."""
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    prev_c, prev_p, out = iv[:16], iv[16:], b""
    for i in range(0, len(plain), 16):
        block = plain[i:i + 16]
        c = bytes(a ^ b for a, b in zip(ecb.update(bytes(a ^ b for a, b in zip(block, prev_c, strict=True))),
                                        prev_p, strict=True))
        out, prev_c, prev_p = out + c, c, block
    return out


def old_mtp_key_iv(auth_key: bytes, msg_key: bytes) -> tuple[bytes, bytes]:
    """AuthKey::prepareAES_oldmtp(msgKey, aesKey, aesIV, send = false): x = 8."""
    def sha1(*parts: bytes) -> bytes:
        return hashlib.sha1(b"".join(parts)).digest()

    x = 8
    sha1_a = sha1(msg_key, auth_key[x:x + 32])
    sha1_b = sha1(auth_key[32 + x:32 + x + 16], msg_key, auth_key[48 + x:48 + x + 16])
    sha1_c = sha1(auth_key[64 + x:64 + x + 32], msg_key)
    sha1_d = sha1(msg_key, auth_key[96 + x:96 + x + 32])
    key = sha1_a[0:8] + sha1_b[8:8 + 12] + sha1_c[4:4 + 12]
    iv = sha1_a[8:8 + 12] + sha1_b[0:8] + sha1_c[16:16 + 4] + sha1_d[0:8]
    return key, iv


def encrypt_local(data: bytes, auth_key: bytes) -> bytes:
    """EncryptedDescriptor + PrepareEncrypted: 4 bytes of length (little-endian, counting itself), the data,
    random padding to 16; the message key is SHA-1 of all of it, cut to 16 bytes."""
    size = 4 + len(data)
    full = size + (-size % 16)
    plain = struct.pack("<I", size) + data + os.urandom(full - size)
    msg_key = hashlib.sha1(plain).digest()[:16]
    return msg_key + ige_encrypt(plain, *old_mtp_key_iv(auth_key, msg_key))


def create_local_key(passcode: bytes, salt: bytes) -> bytes:
    """CreateLocalKey: PBKDF2-HMAC-SHA512(SHA-512(salt + passcode + salt), salt, 1 or 100000, 256 bytes)."""
    hash_key = hashlib.sha512(salt + passcode + salt).digest()
    return hashlib.pbkdf2_hmac("sha512", hash_key, salt, 100_000 if passcode else 1, 256)


def to_file_part(name: str) -> str:
    """ToFilePart(ComputeDataNameKey(name)): the low 64 bits of the MD5, a nibble at a time from the lowest."""
    val = int.from_bytes(hashlib.md5(name.encode("utf-8")).digest()[:8], "little")
    out = ""
    for _ in range(16):
        v = val & 0x0F
        out += chr(ord("0") + v) if v < 10 else chr(ord("A") + v - 10)
        val >>= 4
    return out


def data_name(index: int) -> str:
    """ComposeDataString("data", index)."""
    return "data" if index == 0 else f"data#{index + 1}"


@dataclass
class Account:
    user_id: int
    main_dc: int
    keys: dict[int, bytes] = field(repr=False)  # dc id -> 256-byte auth key
    index: int = 0
    wide_ids: bool = True


def mtp_authorization(account: Account) -> bytes:
    if account.wide_ids:
        head = struct.pack(">IIQi", 0xFFFFFFFF, 0xFFFFFFFF, account.user_id, account.main_dc)
    else:
        head = struct.pack(">ii", account.user_id, account.main_dc)
    keys = struct.pack(">i", len(account.keys)) + b"".join(struct.pack(">i", dc) + key
                                                            for dc, key in account.keys.items())
    return head + keys + struct.pack(">i", 0)  # no keys to destroy


def write_tdata(folder: Path, accounts: list[Account], passcode: str = "", *, suffix: str = "s") -> bytes:
    """A tdata folder holding these accounts; returns its local key (tests that damage files need it)."""
    folder.mkdir(parents=True, exist_ok=True)
    salt = os.urandom(32)
    local_key = os.urandom(256)
    passcode_key = create_local_key(passcode.encode("utf-8"), salt)
    key_encrypted = encrypt_local(local_key, passcode_key)
    info = struct.pack(">i", len(accounts)) + b"".join(struct.pack(">i", a.index) for a in accounts)
    info_encrypted = encrypt_local(info, local_key)
    (folder / f"key_data{suffix}").write_bytes(tdf(qbytes(salt) + qbytes(key_encrypted) + qbytes(info_encrypted)))
    for account in accounts:
        write_account(folder, account, local_key, suffix=suffix)
    (folder / "settingss").write_bytes(tdf(qbytes(encrypt_local(b"\x00" * 8, local_key))))  # as a real folder has
    return local_key


def write_account(folder: Path, account: Account, local_key: bytes, *, block: int = 0x4B, suffix: str = "s") -> Path:
    body = struct.pack(">I", block) + qbytes(mtp_authorization(account))
    path = folder / (to_file_part(data_name(account.index)) + suffix)
    path.write_bytes(tdf(qbytes(encrypt_local(body, local_key))))
    map_folder = folder / to_file_part(data_name(account.index))  # the account's own folder (its "maps")
    map_folder.mkdir(exist_ok=True)
    return path
