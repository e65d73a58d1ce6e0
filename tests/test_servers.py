"""Any Telegram server for new logins: ``[telegram] server``, ``port``, ``dc_id``, ``public_key_file``, ``test_mode``.

A login goes through the real daemon and the real TelethonGateway (test_onboarding's FleetGateway: real
TelegramClients, a scripted network layer that records the Connection object Telethon was about to open), so
what is checked is the address and port the client dials and the session the account keeps. An imported
session keeps its own server. The key file is read at start: a bad one is one line and exit code 2.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tgscript as ts
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa as crypto_rsa
from daemon_proc import isolated_env, no_traceback, one_line
from telethon.crypto import rsa as telethon_rsa
from telethon.tl import functions
from test_onboarding import (  # noqa: F401 - tg_factory is a fixture used by name
    authorization,
    code_try,
    sent_code,
    signed_in,
    tg_factory,
    user_for,
)

from tgdaemon import config
from tgdaemon.errors import ConfigError
from tgdaemon.gateway import servers
from tgdaemon.gateway.telegram import TelethonGateway


@pytest.fixture(autouse=True)
def own_key_list(monkeypatch: pytest.MonkeyPatch) -> dict[int, Any]:
    """Telethon's key list is global: each test adds to a copy of it."""
    keys = dict(telethon_rsa._server_keys)
    monkeypatch.setattr(telethon_rsa, "_server_keys", keys)
    return keys


def pem(bits: int = 2048, fmt: serialization.PublicFormat = serialization.PublicFormat.PKCS1) -> tuple[bytes, Any]:
    key = crypto_rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key()
    return key.public_bytes(serialization.Encoding.PEM, fmt), key.public_numbers()


def fingerprint(numbers: Any) -> int:
    import rsa
    return telethon_rsa._compute_fingerprint(rsa.PublicKey(numbers.n, numbers.e))


def load(**telegram: Any) -> config.Config:
    return config.load("/dev/null", env={}, overrides={"telegram": {"api_id": ts.API_ID, "api_hash": ts.API_HASH,
                                                                    **telegram}})


# -- the config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("telegram", "says"), [
    ({"port": 0}, "telegram.port: expected `int` >= 1"),
    ({"port": 65536}, "telegram.port: expected `int` <= 65535"),
    ({"server": "10.0.0.1:443"}, "server '10.0.0.1:443': an IPv4 address or a host name (no port"),
    ({"server": "2001:db8::1"}, "no IPv6"),
    ({"server": "bad host"}, "server 'bad host'"),
    ({"public_key_file": "/etc/key.pem"}, "public_key_file is set but neither server nor test_mode is"),
    ({"dc_id": 0}, "telegram.dc_id: expected `int` >= 1"),
])
def test_a_bad_server_setting_is_one_line_naming_the_key(telegram: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(**telegram)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_where_logins_go() -> None:
    assert servers.login_server(load().telegram) is None  # Telethon's built-in production DC
    assert servers.login_server(load(test_mode=True).telegram) == servers.LoginServer(2, "149.154.167.40", 443)
    assert servers.login_server(load(test_mode=True, port=80).telegram) == servers.LoginServer(2, "149.154.167.40", 80)
    assert servers.login_server(load(server="mtproto.example.org", port=8443, dc_id=1).telegram) == \
        servers.LoginServer(1, "mtproto.example.org", 8443)
    assert servers.login_server(load(server="10.1.2.3", test_mode=True).telegram) == \
        servers.LoginServer(2, "10.1.2.3", 443)  # server names another test DC


@pytest.mark.parametrize("fmt", [serialization.PublicFormat.PKCS1, serialization.PublicFormat.SubjectPublicKeyInfo])
def test_the_servers_public_key_joins_telethons_keys(tmp_path: Path, fmt: Any, own_key_list: dict[int, Any]) -> None:
    text, numbers = pem(fmt=fmt)
    path = tmp_path / "server.pem"
    path.write_bytes(b"a comment line\n" + text)
    assert fingerprint(numbers) not in own_key_list
    gw = TelethonGateway(load(server="10.1.2.3", public_key_file=str(path)).telegram)
    assert gw.login_server == servers.LoginServer(2, "10.1.2.3", 443)
    key, old = own_key_list[fingerprint(numbers)]
    assert (key.n, key.e, old) == (numbers.n, numbers.e, False)
    assert telethon_rsa.encrypt(fingerprint(numbers), b"x" * 32) is not None  # usable for the handshake


def damaged(tmp_path: Path) -> Path:
    text, _ = pem()
    lines = text.splitlines()
    lines[3] = lines[3][:10] + b"!!!!" + lines[3][14:]
    (path := tmp_path / "damaged.pem").write_bytes(b"\n".join(lines))
    return path


@pytest.mark.parametrize(("make", "says"), [
    (lambda tmp: tmp / "missing.pem", "cannot read it (No such file or directory)"),
    (lambda tmp: tmp, "cannot read it (Is a directory)"),
    (lambda tmp: (tmp / "junk.pem", (tmp / "junk.pem").write_text("not a key"))[0],
     "no PEM RSA public key in it"),
    (damaged, "the RSA PUBLIC KEY block is not a valid RSA public key"),
    (lambda tmp: (tmp / "small.pem", (tmp / "small.pem").write_bytes(pem(1024)[0]))[0],
     "a 1024-bit key; MTProto needs 2048 bits"),
    (lambda tmp: (tmp / "big.pem", (tmp / "big.pem").write_bytes(b"x" * 70_000))[0], "larger than 64 KiB"),
])
def test_a_bad_key_file_is_one_line_naming_it(tmp_path: Path, make: Callable[[Path], Path], says: str,
                                                own_key_list: dict[int, Any]) -> None:
    before = dict(own_key_list)
    path = make(tmp_path)
    with pytest.raises(ConfigError) as err:
        TelethonGateway(load(test_mode=True, public_key_file=str(path)).telegram)
    assert str(err.value).startswith(f"telegram.public_key_file {path}: ") and says in str(err.value)
    assert "\n" not in str(err.value)
    assert own_key_list == before  # nothing added


def test_a_bad_key_file_stops_tgdaemon_run_with_one_line(tmp_path: Path) -> None:
    (key := tmp_path / "server.pem").write_text("-----BEGIN RSA PUBLIC KEY-----\nbroken\n-----END RSA PUBLIC KEY-----\n")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[telegram]\napi_id = {ts.API_ID}\napi_hash = "{ts.API_HASH}"\ntest_mode = true\n'
                   f'public_key_file = "{key}"\n[daemon]\ndata_dir = "{tmp_path / "data"}"\n'
                   f'socket = "{tmp_path / "d.sock"}"\nhttp = "127.0.0.1:0"\n')
    result = subprocess.run([sys.executable, "-m", "tgdaemon", "run", "--config", str(cfg)], env=isolated_env(tmp_path),
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    no_traceback(result)
    assert result.returncode == 2, result.stderr
    assert one_line(result.stderr) == (f"tgdaemon: telegram.public_key_file {key}: the RSA PUBLIC KEY block is not a"
                                       " valid RSA public key")
    assert not (tmp_path / "data").exists()  # refused before anything was made


# -- logins dial it; imports keep their own ---------------------------------------------------------


def login_steps(tg: Any, phone: str, user_id: int) -> None:
    me = user_for(phone, user_id)
    tg.gw.login(phone, (functions.auth.SendCodeRequest, sent_code("h")), *code_try(authorization(me)), *signed_in(me))


async def log_in(tg: Any, phone: str) -> dict[str, Any]:
    started = await tg.client.request("POST", "/login", body={"phone": phone})
    return await tg.client.request("POST", f"/login/{started['login_id']}/code", body={"code": "12345"})


@pytest.mark.parametrize(("telegram", "dials"), [
    ({"server": "10.20.30.40", "port": 4430, "dc_id": 1}, (1, "10.20.30.40", 4430)),
    ({"test_mode": True}, (2, "149.154.167.40", 443)),
    ({}, (2, "149.154.167.51", 443)),  # nothing configured: Telethon's own production address
])
async def test_a_login_dials_the_configured_server_and_the_account_keeps_it(
        tg_factory: Callable[..., Any], telegram: dict[str, Any], dials: tuple[int, str, int]) -> None:  # noqa: F811
    async with tg_factory(**telegram) as tg:
        login_steps(tg, "+15550004444", 4444)
        done = await log_in(tg, "+15550004444")
        assert done["status"] == "done"
        [sender] = tg.gw.by_phone["15550004444"]
        sender.assert_done()
        assert (sender.connection._dc_id, sender.connection._ip, sender.connection._port) == dials
        stored = await tg.store.load_session(done["account"]["id"])
        assert (stored.dc_id, stored.server, stored.port) == dials and stored.auth_key == sender.auth_key.key
        [client] = tg.gw.clients[None]  # type: ignore[index]
        # a client on a configured server has Telethon's DC table cache of its own (a class attribute)
        assert (type(client) is tg.gw._login_class) == bool(telegram)
        assert type(client)._config is None or type(client) is not tg.gw._login_class


async def test_an_imported_session_keeps_its_own_server(tg_factory: Callable[..., Any]) -> None:  # noqa: F811
    async with tg_factory(server="10.20.30.40", port=4430) as tg:
        key = os.urandom(256)
        tg.gw.keys[key] = user_for("+15550005555", 5555)
        answer = await tg.client.request("POST", "/accounts/import", body={"sessions": [
            {"source": "s.txt:1", "label": "imported", "dc_id": 4, "server": ts.DC_IPS[4], "port": 443,
             "auth_key": base64.b64encode(key).decode()}]})
        assert answer["results"][0]["ok"], answer
        [check] = tg.gw.checks
        assert (check.connection._ip, check.connection._port) == (ts.DC_IPS[4], 443)
        stored = await tg.store.load_session(answer["results"][0]["account_id"])
        assert (stored.dc_id, stored.server, stored.port) == (4, ts.DC_IPS[4], 443)
