"""TLS on the provider port: the certificate read at start and again on SIGHUP, and plain text refused
where bearer tokens would cross a network.

A reload builds a whole new context and swaps it in, rather than loading the new files into the live
one: OpenSSL replaces a context's certificate before it looks at the key, so a key that does not match
would leave the live context holding the new certificate with the old key, and every handshake would
fail. A new context is built whole or not at all; the provider port hands each new connection the
context current at its accept (``connguard``), and connections already open keep theirs.

OpenSSL's own messages for a bad file ("PEM lib") name neither the file nor the problem, so each file
is read and checked on its own first, and the operator gets one line naming the key and the file.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import ssl
from pathlib import Path

from tgdaemon.config import Config
from tgdaemon.errors import ConfigError, TgfleetError

log = logging.getLogger(__name__)
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
_SSL_SOURCE = re.compile(r"\s*\(_ssl\.c:\d+\)$")


class TLSFileError(TgfleetError):
    """The provider port's certificate or key cannot be used."""


class _Encrypted(Exception):
    """Raised from OpenSSL's passphrase callback: a daemon has nobody to type one (and must not block on a
    terminal's prompt, which OpenSSL would otherwise show)."""


class ProviderTLS:
    """The provider port's certificate and key, and the context new connections are served with."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.context = server_context(cert_file, key_file)  # TLSFileError at start: the daemon does not start

    def reload(self) -> None:
        """SIGHUP: the files read again; new connections get the new certificate, open ones keep theirs. A bad
        file is one log line and the previous certificate stays in use."""
        try:
            self.context = server_context(self.cert_file, self.key_file)
        except TLSFileError as exc:
            log.error("SIGHUP: %s; the provider port keeps its previous certificate", exc)
            return
        log.info("SIGHUP: the provider port's certificate reloaded from %s (new connections get it)",
                 self.cert_file)


def hangup(tls: ProviderTLS | None) -> None:
    """SIGHUP: the certificate reloaded, or a line saying there is none; the daemon goes on either way."""
    if tls is None:
        log.info("SIGHUP: nothing to reload (the provider port does not speak TLS)")
    else:
        tls.reload()


def provider_tls(cfg: Config) -> ProviderTLS | None:
    """The provider port's TLS, or None for plain HTTP, which is refused on an address other than loopback
    unless ``daemon.allow_plaintext`` says a TLS-terminating proxy stands in front. Checked before the
    daemon touches anything, like every configuration mistake."""
    d = cfg.daemon
    if d.tls_cert_file and d.tls_key_file:  # only one of them set is refused by the config itself
        return ProviderTLS(Path(d.tls_cert_file).expanduser(), Path(d.tls_key_file).expanduser())
    host, port = cfg.http_bind()
    if not d.allow_plaintext and not is_loopback(host):
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise ConfigError(
            f"daemon.http {address} is not a loopback address, and without TLS the providers' bearer tokens"
            f" would cross the network in plain text: set daemon.tls_cert_file and daemon.tls_key_file, or"
            f" daemon.allow_plaintext = true when a proxy in front terminates TLS")
    return None


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and ``localhost``; anything else may be reached from elsewhere (0.0.0.0 and :: are
    every address, a host name may resolve to any)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A server context holding the chain and key, TLS 1.2 at least; ``TLSFileError`` naming the file."""
    cert_text = _read(cert_file, "daemon.tls_cert_file")
    key_text = _read(key_file, "daemon.tls_key_file")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=cert_text)
    except ssl.SSLError:
        raise TLSFileError(f"daemon.tls_cert_file {cert_file}: no PEM certificate in it"
                           " (expected -----BEGIN CERTIFICATE-----)") from None
    if "PRIVATE KEY-----" not in key_text:
        raise TLSFileError(f"daemon.tls_key_file {key_file}: no PEM private key in it"
                           " (expected -----BEGIN PRIVATE KEY-----)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    try:
        context.load_cert_chain(cert_file, key_file, password=_no_passphrase)
    except _Encrypted:
        raise TLSFileError(f"daemon.tls_key_file {key_file}: the key is encrypted, and a daemon has no one to"
                           " type its passphrase; keep it unencrypted, readable by the daemon's user only") from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TLSFileError(f"daemon.tls_key_file {key_file}: not the key of the certificate in"
                               f" {cert_file}") from None
        raise TLSFileError(f"daemon.tls_key_file {key_file}: cannot be used with the certificate in"
                           f" {cert_file}: {_SSL_SOURCE.sub('', exc.args[-1] if exc.args else str(exc))}") from None
    except OSError as exc:  # replaced or removed between the read above and OpenSSL's own
        raise TLSFileError(f"daemon.tls_cert_file {cert_file}, daemon.tls_key_file {key_file}: cannot read:"
                           f" {exc.strerror or exc}") from None
    return context


def _read(path: Path, key: str) -> str:
    try:
        return path.read_bytes().decode("ascii", errors="replace")
    except OSError as exc:
        raise TLSFileError(f"{key} {path}: cannot read: {exc.strerror or exc}") from None


def _no_passphrase() -> str:
    raise _Encrypted
