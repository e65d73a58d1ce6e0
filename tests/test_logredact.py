"""No secret in any log: the redaction of each kind of secret, and a real daemon fed malformed requests."""

from __future__ import annotations

import base64
import io
import logging
import random
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from daemon_proc import Fleet, fleet

from tgdaemon import config
from tgdaemon.logredact import (
    REDACTED,
    REDACTOR,
    BadRequestFilter,
    RedactingFormatter,
    Redactor,
    configured_secrets,
    install,
)
from tgdaemon.provider.auth import TOKEN_PREFIX, TOKEN_RE

# Random-looking but fixed: the cases' ids are made of them, and every xdist worker must collect the same ids.
_RANDOM = random.Random(13)
TOKEN = TOKEN_PREFIX + base64.urlsafe_b64encode(_RANDOM.randbytes(32)).rstrip(b"=").decode()  # as new_token()
AUTH_KEY = _RANDOM.randbytes(256)


@pytest.mark.parametrize(("text", "secret"), [
    (f"pull by {TOKEN} refused", TOKEN[4:]),
    (f"truncated {TOKEN[:20]}...", TOKEN[4:20]),
    ("Authorization: Basic dXNlcjpodW50ZXIy", "dXNlcjpodW50ZXIy"),
    ("{'Authorization': 'Token abc-def-ghi'}", "abc-def-ghi"),
    ("Proxy-Authorization: Basic cHJveHk6cHc=", "cHJveHk6cHc="),
    ("sent Bearer abc.def.ghi upstream", "abc.def.ghi"),
    (f"auth key {AUTH_KEY.hex()}", AUTH_KEY.hex()[:64]),
    (f"auth key {AUTH_KEY!r}", repr(AUTH_KEY)[2:40]),
    ("key b64 " + base64.b64encode(AUTH_KEY).decode(), base64.b64encode(AUTH_KEY).decode()[:64]),
    ("ProxyConfig(type='socks5', host='h', port=1, username='u', password='hunter2-x', secret='')", "hunter2-x"),
    ('{"password": "s3cr3t pass"}', "s3cr3t pass"),
    ("mtproxy secret=ee0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef"),
    ("api_hash: 0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef"),
    ("login for +15551234567 failed", "5551234567"),
    ("login for +1 555 123-4567 failed", "123-4567"),
    ("phone=15551234567 TGFLEET_PHONE=15557654321", "5551234567"),
    ("cannot dial socks5://alice:pa55-W0rd@203.0.113.7:1080: refused", "pa55-W0rd"),
    ("proxy=http://bob:hunter2%40x@proxy.example:3128", "hunter2%40x"),
])
def test_each_kind_of_secret_is_redacted(text: str, secret: str) -> None:
    out = Redactor().redact(text)
    assert secret not in out, out
    assert REDACTED in out or "*" in out


def test_phones_keep_their_masked_form_and_ordinary_text_survives() -> None:
    redactor = Redactor()
    assert redactor.redact("account +15551234567 ready") == "account +155******67 ready"
    ordinary = ("tgdaemon ready: socket /tmp/tgf-x/d.sock, http 127.0.0.1:8780, gateway simulator; "
                "seeded 50000 accounts; task 12345 lease 0123456789abcdef0123456789abcdef; "
                "password_file /etc/tgfleet/2fa.toml: no such file; path "
                "/var/lib/tgdaemon/some_very_long_directory_name_that_goes_on_and_on_and_on/media")
    assert redactor.redact(ordinary) == ordinary


def test_registered_secrets_are_redacted_only_while_held() -> None:
    redactor = Redactor()
    with redactor.secret("correct horse"):
        with redactor.secret("correct horse"):  # nested holds of the same secret
            pass
        assert redactor.redact("2FA: correct horse battery") == f"2FA: {REDACTED} battery"
    assert redactor.redact("correct horse") == "correct horse"  # not remembered past its task
    redactor.add("abc")  # too short to redact without blanking ordinary words
    assert redactor.redact("abc") == "abc"


def test_the_configured_secrets_are_the_proxy_password_and_secret_and_the_api_hash(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[telegram]\napi_id = 1\napi_hash = "0123456789abcdef0123456789abcdef"\n'
                    '[telegram.proxy]\ntype = "socks5"\nhost = "h"\nport = 1\nusername = "u"\n'
                    'password = "proxy-pw-1"\n')
    cfg = config.load(path, env={})
    assert configured_secrets(cfg) == ["proxy-pw-1", "0123456789abcdef0123456789abcdef"]
    (tmp_path / "empty.toml").write_text("")
    assert configured_secrets(config.load(tmp_path / "empty.toml", env={})) == []


def test_formatter_redacts_message_arguments_and_exception_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # install() replaces these: put them back after
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    server = logging.getLogger("aiohttp.server")
    monkeypatch.setattr(server, "filters", list(server.filters))
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("test_logredact.formatter")
    logger.propagate = False
    logger.addHandler(handler)
    root = logging.Logger("isolated-root")
    root.addHandler(handler)
    install(["my-proxy-password"], root=root)
    assert isinstance(handler.formatter, RedactingFormatter)
    try:
        raise ValueError(f"upstream said no to {TOKEN} via my-proxy-password")
    except ValueError:
        logger.exception("request with %s failed", f"Bearer {TOKEN}")
    logger.removeHandler(handler)
    REDACTOR.discard("my-proxy-password")
    out = stream.getvalue()
    assert "Traceback" in out and "ValueError" in out
    assert TOKEN[4:] not in out and "my-proxy-password" not in out, out


@pytest.mark.parametrize("exc", [
    BadHttpMessage(f"Invalid header value char:\n\n  b'Authorization: Bearer {TOKEN}\\x01'\n  ^"),
    LineTooLong(f"b'Bearer {TOKEN}XXXXXXXX...'", "8190"),
])
def test_bad_request_record_becomes_one_line_without_the_bytes(exc: Exception) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s")))
    logger = logging.Logger("aiohttp.server")
    logger.addHandler(handler)
    logger.addFilter(BadRequestFilter())
    try:
        raise exc
    except Exception as caught:
        logger.exception("Error handling request from %s", "127.0.0.1", exc_info=caught)
    out = stream.getvalue()
    assert out.count("\n") == 1, out
    assert out.startswith("WARNING aiohttp.server: bad HTTP request from 127.0.0.1: 400 ")
    assert "Bearer" not in out and "tgf_" not in out and "Traceback" not in out


# --- a real daemon ----------------------------------------------------------------------------

@pytest.fixture
def daemon_fleet() -> Iterator[Fleet]:
    with fleet() as f:
        yield f


def _http_port(log: str) -> int:
    found = re.search(r"http 127\.0\.0\.1:(\d+)", log)
    assert found, log
    return int(found.group(1))


def _raw_request(port: int, data: bytes) -> bytes:
    """Send ``data`` as is and read the answer until the server closes (bounded by the socket timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(data)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def test_malformed_requests_never_put_the_token_in_the_log(daemon_fleet: Fleet) -> None:
    daemon = daemon_fleet.start(accounts=5).wait_ready()
    added = daemon_fleet.cli("providers", "add", "acme", "--socket", str(daemon_fleet.socket_path))
    assert added.returncode == 0, added.stderr
    token = TOKEN_RE.search(added.stdout)
    assert token, added.stdout
    token_text = token.group(0)
    port = _http_port(daemon.log())
    control_byte = (b"POST /api/provider/telegram/tasks/pull HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Authorization: Bearer " + token_text.encode() + b"\x01\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
    oversize = (b"GET /api/provider/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Authorization: Bearer " + token_text.encode() + b"A" * 9000 + b"\r\n\r\n")
    for raw in (control_byte, oversize):
        status_line = _raw_request(port, raw).split(b"\r\n", 1)[0]
        assert b" 400 " in status_line, status_line
    deadline = time.monotonic() + 10
    while daemon.log().count("bad HTTP request") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert daemon.stop() == 0
    log = daemon.log()
    assert token_text not in log and token_text[4:24] not in log, log
    assert "Traceback" not in log and "Bearer" not in log, log
    bad = [line for line in log.splitlines() if "aiohttp.server" in line]
    assert len(bad) == 2, log  # each bad request: exactly one line
    assert all("bad HTTP request from 127.0.0.1: 400" in line for line in bad), bad
