"""Where new logins connect: Telethon's built-in production DC, Telegram's test DCs, or a self-hosted server.

Telethon dials a fresh session at its built-in address (DC 2 of production); a login elsewhere starts from a
session that already names its server, and a server whose RSA key Telethon does not carry has its key added
to Telethon's key list (``telethon.crypto.rsa.add_key``) before any connection. Imported sessions name their
own server and keep it: none of this applies to them.

The key file is read and checked when the gateway is made, at start, so that a bad one is one line naming
the file and the problem, never a failed handshake later (Telethon's own message names neither).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import rsa
from telethon.crypto import rsa as telethon_rsa

from tgdaemon.config import TelegramConfig
from tgdaemon.errors import ConfigError
from tgdaemon.store import SessionData

# Telegram's test environment (https://core.telegram.org/api/datacenter): DC 2 of the test DCs. A test phone
# number (99966XYYYY) migrates the login to its DC X by Telegram's own PHONE_MIGRATE.
TEST_DC = (2, "149.154.167.40")
MAX_KEY_FILE = 64 * 1024
MTPROTO_KEY_BITS = 2048


@dataclass(frozen=True, slots=True)
class LoginServer:
    dc_id: int
    host: str
    port: int

    def session(self) -> SessionData:
        """A session with no key yet that names this server: Telethon makes its auth key there."""
        return SessionData(self.dc_id, self.host, self.port, None)

    def __str__(self) -> str:
        return f"DC {self.dc_id} at {self.host}:{self.port}"


def login_server(cfg: TelegramConfig) -> LoginServer | None:
    """The configured server for new logins; None: Telethon's built-in production address. ``server`` wins
    over test_mode's default address (another test DC, say)."""
    if cfg.server:
        return LoginServer(cfg.dc_id, cfg.server, cfg.port)
    if cfg.test_mode:
        return LoginServer(TEST_DC[0], TEST_DC[1], cfg.port)
    return None


def read_public_key(path: Path) -> rsa.PublicKey:
    """The RSA public key in a PEM file, PKCS#1 (``BEGIN RSA PUBLIC KEY``, as Telegram publishes them) or
    X.509 (``BEGIN PUBLIC KEY``, what ``openssl rsa -pubout`` writes); ConfigError naming the file otherwise."""
    where = f"telegram.public_key_file {path}"
    try:
        with path.open("rb") as f:
            data = f.read(MAX_KEY_FILE + 1)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > MAX_KEY_FILE:
        raise ConfigError(f"{where}: larger than {MAX_KEY_FILE // 1024} KiB, not a PEM public key")
    loaders = (("RSA PUBLIC KEY", rsa.PublicKey.load_pkcs1), ("PUBLIC KEY", rsa.PublicKey.load_pkcs1_openssl_pem))
    for kind, load in loaders:
        if f"-----BEGIN {kind}-----".encode() in data:
            try:
                key = load(data)
            except Exception:  # rsa and pyasn1 raise a dozen kinds for a damaged key
                raise ConfigError(f"{where}: the {kind} block is not a valid RSA public key") from None
            if key.n.bit_length() < MTPROTO_KEY_BITS:  # MTProto encrypts 255 bytes with it: no smaller key can
                raise ConfigError(f"{where}: a {key.n.bit_length()}-bit key; MTProto needs {MTPROTO_KEY_BITS} bits")
            return key
    raise ConfigError(f"{where}: no PEM RSA public key in it (expected a BEGIN RSA PUBLIC KEY or BEGIN PUBLIC KEY"
                      " block)")


def prepare(cfg: TelegramConfig) -> LoginServer | None:
    """The login server, with its public key (if one is configured) added to Telethon's keys."""
    server = login_server(cfg)
    if cfg.public_key_file:
        key = read_public_key(Path(cfg.public_key_file).expanduser())
        telethon_rsa.add_key(key.save_pkcs1().decode(), old=False)
    return server
