"""TLS on the provider port (issue 12, item 3): real daemon subprocesses serving certificates made in the
test by ``trustme``, real TLS clients on 127.0.0.1, real SIGHUPs; and the operator's mistakes, each
refused at start in one line. Every wait is bounded; every loop is bounded in count.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import ssl
import time
import warnings
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from daemon_proc import (
    DaemonProc,
    Fleet,
    fleet,
    isolated_env,
    no_traceback,
    one_line,
    run_cli_many,
)

from tgdaemon.lifecycle.tls import is_loopback, server_context

WAIT = 10.0
PULL = "/api/provider/telegram/tasks/pull"
REFUSED_AT_START = 120.0  # all at once, on a loaded machine; one that should have refused and did not dies then


class Leaf:
    """A certificate for 127.0.0.1 and its key, in files, and the serial a client should see."""

    def __init__(self, ca: trustme.CA, directory: Path, name: str) -> None:
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.cert_pem = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
        self.key_pem = cert.private_key_pem.bytes()
        self.serial = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()).serial_number
        self.cert_file = directory / f"{name}.crt"
        self.key_file = directory / f"{name}.key"
        self.cert_file.write_bytes(self.cert_pem)
        self.key_file.write_bytes(self.key_pem)
        self.key_file.chmod(0o600)


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def write_config(f: Fleet, **daemon: Any) -> None:
    f.config.write_text("[daemon]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in daemon.items()))


def cli_json(f: Fleet, *args: str) -> Any:
    result = f.cli(*args, "--json", "--socket", str(f.socket_path))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def port_of(f: Fleet) -> int:
    return int(cli_json(f, "status")["http"].rpartition(":")[2])


async def wait_for_log(daemon: DaemonProc, text: str) -> str:
    """The daemon's log once it holds ``text`` (bounded)."""
    deadline = time.monotonic() + WAIT
    for _ in range(int(WAIT / 0.05)):
        log = daemon.log()
        if text in log or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert text in log, log[-3000:]
    return log


async def closed_by_peer(reader: asyncio.StreamReader) -> bool:
    """Whether the daemon closes this connection (an end of stream or a reset) within WAIT."""
    try:
        return await asyncio.wait_for(reader.read(1), WAIT) == b""
    except ConnectionResetError:
        return True


async def still_open(reader: asyncio.StreamReader) -> bool:
    try:
        await asyncio.wait_for(reader.read(1), 0.3)
    except asyncio.TimeoutError:
        return True
    except ConnectionResetError:
        return False
    return False


async def healthz(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    """One keep-alive ``GET /healthz`` on an open connection; its status code."""
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    assert length is not None, head
    await asyncio.wait_for(reader.readexactly(int(length[1])), WAIT)
    return int(head.split()[1])


def serial_of(writer: asyncio.StreamWriter) -> int:
    """The serial of the certificate the daemon showed on this connection."""
    return int(writer.get_extra_info("ssl_object").getpeercert()["serialNumber"], 16)


async def served_serial(port: int, context: ssl.SSLContext) -> int:
    """The serial of the certificate a NEW connection is served (after a request on it answered 200)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        assert await healthz(reader, writer) == 200
        return serial_of(writer)
    finally:
        writer.close()


async def test_a_provider_pulls_over_https_and_a_silent_or_plain_client_is_closed(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = Leaf(ca, tmp_path, "a")
    with fleet() as f:
        write_config(f, tls_cert_file=str(leaf.cert_file), tls_key_file=str(leaf.key_file),
                     http_header_timeout_seconds=3.0)  # short, for the silent one; ample for the rest
        daemon = f.start(accounts=3)
        await daemon.await_ready()
        status = cli_json(f, "status")
        assert status["tls"] is True
        assert f"http {status['http']} (TLS)" in await wait_for_log(daemon, "tgdaemon ready")
        port = port_of(f)
        token = f.cli("providers", "add", "acme", "--socket", str(f.socket_path)).stdout.strip()
        async with aiohttp.ClientSession() as http:
            async with http.post(f"https://127.0.0.1:{port}{PULL}", json={"limit": 1}, ssl=trusting(ca),
                                 headers={"Authorization": f"Bearer {token}"}) as resp:
                assert resp.status == 200 and (await resp.json())["tasks"] == []
            with pytest.raises(aiohttp.ClientError):  # plain HTTP to the TLS port: no answer, no token read
                async with http.post(f"http://127.0.0.1:{port}{PULL}", json={"limit": 1},
                                     headers={"Authorization": f"Bearer {token}"}):
                    pass
        await wait_for_log(daemon, "1 failed the TLS handshake")
        # a request written at once after the handshake often arrives with its last flight, before the
        # daemon's handler exists (about one in three, measured): every one is answered all the same
        assert [await served_serial(port, trusting(ca)) for _ in range(30)] == [leaf.serial] * 30
        old = trusting(ca)
        with warnings.catch_warnings():  # TLS 1.1 is deprecated: the point is that the daemon refuses it
            warnings.simplefilter("ignore", DeprecationWarning)
            old.minimum_version, old.maximum_version = ssl.TLSVersion.MINIMUM_SUPPORTED, ssl.TLSVersion.TLSv1_1
        old.set_ciphers("DEFAULT:@SECLEVEL=0")  # else this client alone would refuse TLS 1.1
        with pytest.raises(ConnectionResetError):  # the daemon hangs up (asyncio sends no alert first)
            await asyncio.open_connection("127.0.0.1", port, ssl=old)
        # a TCP connection that never starts the handshake is closed at the request deadline, like a silent one
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await closed_by_peer(reader)
        writer.close()
        await wait_for_log(daemon, "closed 1 that sent no complete request within 3 s")
        assert await daemon.astop() == 0
        log = daemon.log()  # the stop reported what was still counted: plain HTTP and TLS 1.1, one each
        assert sum(int(n) for n in re.findall(r"(\d+) failed the TLS handshake", log)) == 2
        assert "Traceback" not in log


async def test_connections_still_in_the_handshake_count_toward_the_cap_and_make_room_first(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = Leaf(ca, tmp_path, "a")
    with fleet() as f:
        write_config(f, tls_cert_file=str(leaf.cert_file), tls_key_file=str(leaf.key_file), max_http_connections=3,
                     http_header_timeout_seconds=600.0)
        daemon = f.start(accounts=3)
        await daemon.await_ready()
        port = port_of(f)
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]  # the cap, none says hello
        try:
            assert await served_serial(port, trusting(ca)) == leaf.serial  # a fourth gets in...
            assert await closed_by_peer(silent[0][0])  # ...by closing the oldest that was not in a request
            assert [await still_open(reader) for reader, _ in silent[1:]] == [True, True]
            await wait_for_log(daemon, "closed 1 that were not in a request, to make room")
        finally:
            for _, writer in silent:
                writer.close()
        assert await daemon.astop() == 0


async def test_sighup_serves_a_new_certificate_to_new_connections_and_keeps_it_through_bad_files(
        tmp_path: Path) -> None:
    ca = trustme.CA()
    first, second = Leaf(ca, tmp_path, "first"), Leaf(ca, tmp_path, "second")
    live_cert, live_key = tmp_path / "live.crt", tmp_path / "live.key"
    live_cert.write_bytes(first.cert_pem)
    live_key.write_bytes(first.key_pem)
    context = trusting(ca)
    with fleet() as f:
        write_config(f, tls_cert_file=str(live_cert), tls_key_file=str(live_key),
                     http_idle_timeout_seconds=600.0)  # the kept connection idles between the steps
        daemon = f.start(accounts=3)
        await daemon.await_ready()
        port = port_of(f)
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)  # kept alive throughout
        assert await healthz(reader, writer) == 200 and serial_of(writer) == first.serial

        live_cert.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
        daemon.proc.send_signal(signal.SIGHUP)
        await wait_for_log(daemon, f"SIGHUP: daemon.tls_cert_file {live_cert}: no PEM certificate in it"
                                   " (expected -----BEGIN CERTIFICATE-----); the provider port keeps its previous"
                                   " certificate")
        assert await served_serial(port, context) == first.serial

        live_cert.write_bytes(second.cert_pem)  # renewed, but the old key left in place
        daemon.proc.send_signal(signal.SIGHUP)
        await wait_for_log(daemon, f"SIGHUP: daemon.tls_key_file {live_key}: not the key of the certificate in"
                                   f" {live_cert}; the provider port keeps its previous certificate")
        assert await served_serial(port, context) == first.serial

        live_key.write_bytes(second.key_pem)
        daemon.proc.send_signal(signal.SIGHUP)
        log = await wait_for_log(daemon, "SIGHUP: the provider port's certificate reloaded")
        assert await served_serial(port, context) == second.serial
        assert await healthz(reader, writer) == 200 and serial_of(writer) == first.serial  # the open one: untouched
        writer.close()
        assert log.count("keeps its previous certificate") == 2 and "Traceback" not in log
        assert await daemon.astop() == 0


async def test_plain_text_on_every_address_is_served_when_allowed_and_sighup_there_only_says_so() -> None:
    with fleet() as f:
        write_config(f, allow_plaintext=True)
        daemon = f.start(accounts=3, extra_args=["--http", "0.0.0.0:0"])
        await daemon.await_ready()
        status = cli_json(f, "status")
        assert status["tls"] is False and status["http"].startswith("0.0.0.0:")
        assert f"http {status['http']} (no TLS)" in await wait_for_log(daemon, "tgdaemon ready")
        daemon.proc.send_signal(signal.SIGHUP)
        await wait_for_log(daemon, "SIGHUP: nothing to reload (the provider port does not speak TLS)")
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port_of(f)}/healthz") as resp:
            assert resp.status == 200
        assert daemon.returncode is None and cli_json(f, "status")["pid"] == daemon.pid
        assert await daemon.astop() == 0


def encrypted_key(leaf: Leaf) -> bytes:
    key = serialization.load_pem_private_key(leaf.key_pem, password=None)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.BestAvailableEncryption(b"passphrase"))


def test_operator_mistakes_are_refused_at_start_in_one_line(tmp_path: Path) -> None:
    ca = trustme.CA()
    good, other = Leaf(ca, tmp_path, "good"), Leaf(ca, tmp_path, "other")
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    locked = tmp_path / "encrypted.key"
    locked.write_bytes(encrypted_key(good))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    missing = tmp_path / "missing.pem"
    tls = {"tls_cert_file": str(good.cert_file), "tls_key_file": str(good.key_file)}
    pg = "postgresql://tgfleet@127.0.0.1:1/tgfleet?sslmode=verify-full&sslrootcert="
    cases: list[tuple[dict[str, Any], list[str], int, list[str]]] = [  # (daemon config, args, exit, in the line)
        ({}, ["--http", "0.0.0.0:0"], 2,
         ["daemon.http 0.0.0.0:0 is not a loopback address", "plain text",
          "set daemon.tls_cert_file and daemon.tls_key_file", "daemon.allow_plaintext = true"]),
        ({}, ["--http", "[::]:0"], 2, ["daemon.http [::]:0 is not a loopback address"]),
        ({"tls_cert_file": str(good.cert_file)}, [], 2,
         ["daemon: tls_cert_file is set but tls_key_file is not: set both"]),
        ({**tls, "tls_cert_file": str(missing)}, [], 1,
         [f"daemon.tls_cert_file {missing}: cannot read: No such file or directory"]),
        ({**tls, "tls_key_file": str(tmp_path)}, [], 1, [f"daemon.tls_key_file {tmp_path}: cannot read: Is a directory"]),
        ({**tls, "tls_cert_file": str(garbage)}, [], 1, [f"daemon.tls_cert_file {garbage}: no PEM certificate in it"]),
        ({**tls, "tls_key_file": str(good.cert_file)}, [], 1,
         [f"daemon.tls_key_file {good.cert_file}: no PEM private key in it"]),
        ({**tls, "tls_key_file": str(other.key_file)}, [], 1,
         [f"daemon.tls_key_file {other.key_file}: not the key of the certificate in {good.cert_file}"]),
        ({**tls, "tls_key_file": str(locked)}, [], 1, [f"daemon.tls_key_file {locked}: the key is encrypted"]),
        ({}, ["--store", pg + str(missing)], 2,
         [f"store.url: sslrootcert {missing}: cannot read: No such file or directory"]),
        ({}, ["--store", pg + str(good.key_file)], 2, [f"store.url: sslrootcert {good.key_file}: no PEM certificate"]),
        # a readable CA passes the check and reaches the connect (nothing listens on port 1)
        ({}, ["--store", pg + str(ca_file)], 1, ["database 127.0.0.1:1/tgfleet: cannot connect"]),
    ]
    calls, envs = [], []
    for i, (daemon, args, _, _) in enumerate(cases):
        config = tmp_path / f"case{i}.toml"
        config.write_text("[daemon]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in daemon.items()))
        calls.append(["run", "--simulate", "--accounts", "1", "--data-dir", str(tmp_path / f"data{i}"),
                      "--socket", str(tmp_path / f"s{i}.sock"), "--http", "127.0.0.1:0", "--config", str(config),
                      *args])
        envs.append(isolated_env(tmp_path / f"env{i}"))
    results = run_cli_many(calls, env=envs, timeout=REFUSED_AT_START)
    for (_, args, code, fragments), result in zip(cases, results):
        no_traceback(result)
        line = one_line(result.stdout + result.stderr)
        assert result.returncode == code, (args, line)
        assert all(fragment in line for fragment in fragments), (fragments, line)


def test_only_loopback_addresses_count_as_loopback() -> None:
    assert [is_loopback(h) for h in ("127.0.0.1", "127.8.9.10", "::1", "localhost")] == [True] * 4
    assert [is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "192.168.1.5", "fe80::1", "db.internal",
                                     "localhost.example", "::ffff:10.0.0.1")] == [False] * 8


def test_the_server_context_refuses_anything_older_than_tls_1_2(tmp_path: Path) -> None:
    leaf = Leaf(trustme.CA(), tmp_path, "a")
    context = server_context(leaf.cert_file, leaf.key_file)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
