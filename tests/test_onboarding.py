"""Login and import, through the real control socket and the real CLI, against a real daemon.

The daemon is ``tgdaemon.lifecycle.daemon.Daemon`` in-process with the real
TelethonGateway (``tgscript.ScriptedGateway``): every TelegramClient is real,
only its network layer is a scripted sender. Clients made before an account
exists (a login, the check of a session about to be imported) each get their
own sender from :class:`FleetGateway`, which plays Telegram:

* a login: the first request is ``auth.SendCodeRequest``; the phone in it picks
  the script of that login (``gw.logins[digits]``), and the sender is found
  again as ``gw.by_phone[digits]``;
* an import check: ``get_me`` answers with the user of the session's auth key
  (``gw.keys``), or AUTH_KEY_UNREGISTERED for a key Telegram does not know.

2FA is checked for real: :class:`SrpServer` is the server side of Telegram's
SRP, so a wrong password fails because its proof does not verify.

The CLI runs as a subprocess (``python -m tgdaemon``), with the code and the
password on its standard input.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import inspect
import json
import logging
import os
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tgscript as ts
from conftest import STOP_TIMEOUT, build_config, start_in_process
from daemon_proc import isolated_env
from telethon import TelegramClient
from telethon import password as pwd_mod
from telethon.crypto import AuthKey
from telethon.sessions import SQLiteSession, StringSession
from telethon.tl import functions, types

from tgdaemon.cli.onboard import read_sessions
from tgdaemon.control.client import ControlClient
from tgdaemon.errors import ApiError
from tgdaemon.lifecycle.daemon import Daemon
from tgdaemon.store import mask_phone

CLI_TIMEOUT = 30.0
DEFAULT_DC = (2, "149.154.167.51", 443)  # where Telethon connects a fresh session (DEFAULT_DC_ID, IPv4, port)
NOT_SIGNED_IN = ts.rpc_error(401, "AUTH_KEY_UNREGISTERED")
PROMPTS = ("Code: ", "2FA password: ")
PASSWORD = "correct horse battery staple"

Step = tuple[Any, Any]  # (matcher, answer), as in ScriptedSender.expect


# -- Telegram, as far as login and import see it ---------------------------------------------------


def is_get_self(request: Any) -> bool:
    return (isinstance(request, functions.users.GetUsersRequest) and len(request.id) == 1
            and isinstance(request.id[0], types.InputUserSelf))


def sent_code(phone_code_hash: str) -> Any:
    return ts.make(types.auth.SentCode, type=types.auth.SentCodeTypeApp(length=5), phone_code_hash=phone_code_hash)


def authorization(user: Any) -> Any:
    return ts.make(types.auth.Authorization, user=user)


def code_try(answer: Any) -> list[Step]:
    """What ``client.sign_in(phone, code)`` sends: get_me (not signed in yet), then SignIn."""
    return [(is_get_self, NOT_SIGNED_IN), (functions.auth.SignInRequest, answer)]


def password_try(srp: SrpServer) -> list[Step]:
    """What ``client.sign_in(password=...)`` sends: get_me, GetPassword, CheckPassword (answered by SRP)."""
    return [(is_get_self, NOT_SIGNED_IN), (functions.account.GetPasswordRequest, srp.password),
            (functions.auth.CheckPasswordRequest, srp.check)]


# Telethon's _on_login asks GetState, and from some 1.4x on also GetDifference; 1.39 does not.
_ON_LOGIN_ASKS_DIFFERENCE = "GetDifferenceRequest" in inspect.getsource(TelegramClient._on_login)


def signed_in(user: Any) -> list[Step]:
    """After a successful sign-in: Telethon's _on_login. The daemon takes the user from sign-in's own
    answer and asks nothing more."""
    steps: list[Step] = [(functions.updates.GetStateRequest,
                          types.updates.State(pts=1, qts=0, date=ts._now(), seq=1, unread_count=0))]
    if _ON_LOGIN_ASKS_DIFFERENCE:
        steps.append((functions.updates.GetDifferenceRequest, types.updates.DifferenceEmpty(date=ts._now(), seq=1)))
    return steps


def _sha256(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def _num(n: int) -> bytes:
    return n.to_bytes(256, "big")


@dataclass
class SrpServer:
    """The server side of Telegram's SRP 2FA check (core.telegram.org/api/srp) for one password."""

    password_text: str
    user: Any
    algo: Any = None
    results: list[bool] = field(default_factory=list)
    _offers: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # srp_id -> (b, B)

    def __post_init__(self) -> None:
        self.algo = types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow(
            salt1=os.urandom(40), salt2=os.urandom(16), g=3, p=ts.SRP_PRIME)
        self.p = int.from_bytes(ts.SRP_PRIME, "big")
        self.v = pow(3, int.from_bytes(pwd_mod.compute_hash(self.algo, self.password_text), "big"), self.p)

    def password(self, request: Any) -> Any:
        """account.GetPassword: a fresh B = k*v + g^b for every call."""
        b = int.from_bytes(os.urandom(256), "big") % self.p
        k = int.from_bytes(_sha256(ts.SRP_PRIME, _num(3)), "big")
        big_b = _num((k * self.v + pow(3, b, self.p)) % self.p)
        srp_id = int.from_bytes(os.urandom(7), "big")
        self._offers[srp_id] = (b, big_b)
        return ts.make(types.account.Password, has_password=True, current_algo=self.algo, srp_B=big_b,
                       srp_id=srp_id, new_algo=types.PasswordKdfAlgoUnknown(),
                       new_secure_algo=types.SecurePasswordKdfAlgoUnknown(), secure_random=os.urandom(32))

    def check(self, request: Any) -> Any:
        """auth.CheckPassword: verify the client's M1 against our v; Authorization or PASSWORD_HASH_INVALID."""
        srp = request.password
        b, big_b = self._offers.pop(srp.srp_id)
        a = int.from_bytes(srp.A, "big")
        u = int.from_bytes(_sha256(_num(a), big_b), "big")
        s = pow(a * pow(self.v, u, self.p) % self.p, b, self.p)
        m1 = _sha256(pwd_mod.xor(_sha256(ts.SRP_PRIME), _sha256(_num(3))), _sha256(self.algo.salt1),
                     _sha256(self.algo.salt2), _num(a), big_b, _sha256(_num(s)))
        ok = m1 == bytes(srp.M1)
        self.results.append(ok)
        return authorization(self.user) if ok else ts.rpc_error(400, "PASSWORD_HASH_INVALID")


class FleetGateway(ts.ScriptedGateway):
    """ScriptedGateway whose account-less clients (logins, import checks) each get a sender that plays
    Telegram: see the module doc."""

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.logins: dict[str, deque[list[Step]]] = {}  # phone digits -> scripts, one per SendCode
        self.by_phone: dict[str, list[ts.ScriptedSender]] = {}
        self.keys: dict[bytes, Any] = {}  # auth key -> User (or an rpc_error) that get_me answers
        self.checks: list[ts.ScriptedSender] = []  # senders of import checks, in order of their get_me
        self.send_code_seen: asyncio.Event | None = None
        self.send_code_gate: asyncio.Event | None = None

    def login(self, phone: str, *steps: Step) -> None:
        """Script the next login of ``phone`` (+digits): the SendCode answer first, then the rest in order."""
        self.logins.setdefault(phone.lstrip("+"), deque()).append(list(steps))

    def account_less(self) -> list[ts.ScriptedSender]:
        return [s for s in self.all_senders if s.name.startswith("no account")]

    def next_sender(self, account_id: Any) -> ts.ScriptedSender:
        if account_id is not None:
            return super().next_sender(account_id)
        sender = ts.ScriptedSender(name=f"no account #{len(self.account_less()) + 1}")
        sender.handshake[functions.users.GetUsersRequest] = lambda request: self._who(sender)
        sender.expect(lambda r: isinstance(r, functions.auth.SendCodeRequest) or is_get_self(r),
                      lambda request: self._first(sender, request))
        self.senders[None] = sender  # type: ignore[index]
        self.all_senders.append(sender)
        return sender

    def _who(self, sender: ts.ScriptedSender) -> Any:
        answer = self.keys.get(bytes(sender.auth_key.key or b""), NOT_SIGNED_IN)
        return [answer] if isinstance(answer, types.User) else answer

    async def _first(self, sender: ts.ScriptedSender, request: Any) -> Any:
        if is_get_self(request):  # a session being checked before import
            self.checks.append(sender)
            return self._who(sender)
        phone = request.phone_number
        self.by_phone.setdefault(phone, []).append(sender)
        if self.send_code_seen is not None:
            self.send_code_seen.set()
        if self.send_code_gate is not None:
            await self.send_code_gate.wait()
        scripts = self.logins.get(phone)
        if not scripts:
            return ts.UnexpectedRequest(f"no login scripted for {phone}")
        (_, first), *rest = scripts.popleft()
        for matcher, answer in rest:
            sender.expect(matcher, answer)
        return first(request) if callable(first) else first


# -- the daemon and the CLI ------------------------------------------------------------------------


@dataclass
class CliResult:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"{' '.join(self.args)}: exit {self.code}\n--- stdout\n{self.out}--- stderr\n{self.err}"


@dataclass
class Tg:
    daemon: Daemon
    client: ControlClient
    gw: FleetGateway
    socket: Path
    env: dict[str, str]

    @property
    def store(self) -> Any:
        assert self.daemon.runtime is not None
        return self.daemon.runtime.store

    async def cli(self, *args: str, stdin: str = "") -> CliResult:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tgdaemon", *args, "--socket", str(self.socket), env=self.env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), CLI_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(f"tgdaemon {' '.join(args)} did not finish within {CLI_TIMEOUT}s") from None
        result = CliResult(args, proc.returncode or 0, out.decode(), err.decode())
        assert "Traceback" not in result.out + result.err, str(result)
        return result

    async def count(self, table: str) -> int:
        return next(iter(await self.store.read(f"SELECT COUNT(*) FROM {table}")))[0]

    async def account_row(self, account_id: int) -> Any:
        return next(iter(await self.store.read("SELECT * FROM accounts WHERE id = ?", (account_id,))))

    async def everything_said(self) -> str:
        """What the APIs show: accounts, each account, the events; for secret scanning."""
        listing = await self.client.all_accounts()
        details = [await self.client.account(a["id"]) for a in listing]
        events = await self.client.events(limit=1000)
        return json.dumps([listing, details, events])

    def db_bytes(self) -> bytes:
        data_dir = self.daemon.cfg.data_dir()
        return b"".join(p.read_bytes() for p in sorted(data_dir.glob("*.db*")) if p.is_file())


def stderr_lines(result: CliResult) -> list[str]:
    """stderr without the prompts (written there, with no newline, when stdin is not a terminal)."""
    lines = []
    for line in result.err.splitlines():
        while line.startswith(PROMPTS):
            line = line.removeprefix(next(p for p in PROMPTS if line.startswith(p)))
        if line.strip():
            lines.append(line)
    return lines


def one_error(result: CliResult, code: int = 1) -> str:
    """The one stderr line of a failed command; ``code`` 2 for a bad argument (the daemon's 400 included)."""
    assert result.code == code, str(result)
    lines = stderr_lines(result)
    assert len(lines) == 1, f"expected one line on stderr:\n{result}"
    assert lines[0].startswith("tgdaemon: "), str(result)
    return lines[0]


def secrets_of(key: bytes) -> list[str]:
    """The ways an auth key could show up in text."""
    return [base64.b64encode(key).decode(), base64.urlsafe_b64encode(key).decode(), key.hex(),
            base64.b64encode(key).decode()[:40], key.hex()[:40]]


def assert_no_secret(text: str | bytes, secrets: list[str], where: str) -> None:
    hay = text.decode("latin-1") if isinstance(text, bytes) else text
    for secret in secrets:
        assert secret not in hay, f"a secret ({secret[:8]}...) shows in {where}"


@pytest.fixture
def tg_factory(tmp_path: Path, short_dir: Path, caplog: pytest.LogCaptureFixture) -> Callable[..., Any]:
    """``async with tg_factory(**telegram_overrides) as tg``: a real daemon on a FleetGateway."""
    caplog.set_level(logging.DEBUG)
    env = isolated_env(tmp_path)

    @contextlib.asynccontextmanager
    async def start(**telegram: Any) -> AsyncIterator[Tg]:
        section = {"api_id": ts.API_ID, "api_hash": ts.API_HASH, "connect_timeout_seconds": 2.0,
                   "call_timeout_seconds": 2.0, "request_retries": 0, **telegram}
        cfg = build_config(tmp_path, short_dir / "t.sock", telegram=section)
        gw = FleetGateway(cfg.telegram)
        daemon = Daemon(cfg, gw, install_signal_handlers=False)
        task = await start_in_process(daemon)
        client = ControlClient(cfg.socket_path(), timeout=10)
        try:
            yield Tg(daemon, client, gw, cfg.socket_path(), env)
        finally:
            await client.close()
            daemon.stop()
            assert await asyncio.wait_for(task, STOP_TIMEOUT) == 0
            gw.assert_clean()
            leaked = [s.name for s in gw.all_senders if s.is_connected()]
            assert not leaked, f"clients still connected after the daemon stopped: {leaked}"

    return start


@pytest.fixture
async def tg(tg_factory: Callable[..., Any]) -> AsyncIterator[Tg]:
    async with tg_factory() as daemon:
        yield daemon


def user_for(phone: str, user_id: int, first: str = "Ann", last: str = "Lee") -> Any:
    return ts.user(id=user_id, phone=phone.lstrip("+"), first_name=first, last_name=last)


# -- login -----------------------------------------------------------------------------------------


async def test_login_from_the_cli_keeps_the_code_hash_on_one_client_and_stores_the_session(
        tg: Tg, caplog: pytest.LogCaptureFixture) -> None:
    phone = "+15551234567"
    me = user_for(phone, 424242)
    tg.gw.login(phone, (functions.auth.SendCodeRequest, sent_code("hash-from-telegram")),
                *code_try(authorization(me)), *signed_in(me))

    result = await tg.cli("accounts", "login", phone, "--label", "L", stdin="12345\n")

    assert result.code == 0, str(result)
    assert f"code to {mask_phone(phone)}" in result.out
    assert f"signed in: account 1 (L, {mask_phone(phone)})" in result.out, str(result)
    [sender] = tg.gw.by_phone["15551234567"]
    sender.assert_done()
    [send_code] = sender.calls_of(functions.auth.SendCodeRequest)
    assert (send_code.phone_number, send_code.api_id, send_code.api_hash) == ("15551234567", ts.API_ID, ts.API_HASH)
    [sign_in] = sender.calls_of(functions.auth.SignInRequest)  # on the same sender: the same client
    assert (sign_in.phone_number, sign_in.phone_code_hash, sign_in.phone_code) == (
        "15551234567", "hash-from-telegram", "12345")
    assert len(tg.gw.clients[None]) == 1  # type: ignore[index]
    assert (sender.connects, sender.disconnects) == (1, 1)  # one connection for the whole login, then let go

    listed = json.loads((await tg.cli("accounts", "list", "--json")).out)
    assert [(a["id"], a["label"], a["phone_masked"], a["is_probe"]) for a in listed] == [
        (1, "L", mask_phone(phone), False)]
    assert phone not in json.dumps(listed)  # only masked

    row = await tg.account_row(1)
    assert (row["phone"], row["tg_user_id"], row["label"]) == (phone, 424242, "L")
    stored = await tg.store.load_session(1)
    client = tg.gw.clients[None][0]  # type: ignore[index]
    assert stored.auth_key == sender.auth_key.key and len(stored.auth_key) == 256
    assert (stored.dc_id, stored.server, stored.port) == DEFAULT_DC == (
        client.session.dc_id, client.session.server_address, client.session.port)

    secrets = secrets_of(stored.auth_key)
    assert_no_secret(result.out + result.err, secrets, "the CLI's output")
    assert_no_secret(await tg.everything_said(), secrets, "the API")
    assert_no_secret(caplog.text, secrets, "the daemon log")
    assert [e["kind"] for e in await tg.client.events(account_id=1)] == ["account.login"]


async def test_login_with_2fa_over_srp_and_the_password_never_shows(
        tg: Tg, caplog: pytest.LogCaptureFixture) -> None:
    """Wrong code re-prompts; 2FA asked; a wrong password re-prompts; the right one signs in over real SRP."""
    me = user_for("+15550002222", 2222)
    srp = SrpServer(PASSWORD, me)
    tg.gw.login("+15550002222", (functions.auth.SendCodeRequest, sent_code("h2")),
                *code_try(ts.rpc_error(400, "PHONE_CODE_INVALID")),
                *code_try(ts.rpc_error(401, "SESSION_PASSWORD_NEEDED")),
                *password_try(srp), *password_try(srp), *signed_in(me))

    result = await tg.cli("accounts", "login", "+1 555 000-2222", "--probe",
                          stdin=f"11111\n22222\nnot the password\n{PASSWORD}\n")

    assert result.code == 0, str(result)
    assert stderr_lines(result) == ["tgdaemon: wrong code; enter the code again",
                                    "tgdaemon: wrong 2FA password; enter it again"], str(result)
    assert result.err.count("2FA password: ") == 2 and result.err.count("Code: ") == 2
    assert f"signed in: account 1 (+15550002222, {mask_phone('+15550002222')}), probe" in result.out, str(result)
    assert srp.results == [False, True]  # the password really went through SRP, the wrong one failed on it
    [sender] = tg.gw.by_phone["15550002222"]
    sender.assert_done()
    assert [c.phone_code for c in sender.calls_of(functions.auth.SignInRequest)] == ["11111", "22222"]
    assert {c.phone_code_hash for c in sender.calls_of(functions.auth.SignInRequest)} == {"h2"}
    assert (sender.connects, sender.disconnects) == (1, 1)
    account = await tg.client.account(1)
    assert account["is_probe"] is True and account["label"] == "+15550002222"
    assert (await tg.store.load_session(1)).auth_key == sender.auth_key.key

    assert PASSWORD not in result.out + result.err
    assert PASSWORD not in await tg.everything_said()
    assert PASSWORD not in caplog.text
    assert PASSWORD.encode() not in tg.db_bytes()


async def test_login_over_the_api_refuses_what_it_should_and_cancels_cleanly(tg: Tg) -> None:
    client, gw = tg.client, tg.gw
    for bad in ("+12", "abc"):
        with pytest.raises(ApiError) as err:
            await client.request("POST", "/login", body={"phone": bad})
        assert err.value.code == "invalid_phone" and "international number" in str(err.value)
    assert gw.all_senders == []  # refused before any client or request

    me = user_for("+15550003333", 3333)
    gw.login("+15550003333", (functions.auth.SendCodeRequest, sent_code("h3")),
             *code_try(authorization(me)), *signed_in(me))
    gw.login("+15550004444", (functions.auth.SendCodeRequest, sent_code("h4")))
    started = await client.request("POST", "/login", body={"phone": "+15550003333", "label": "three"})
    assert set(started) == {"login_id", "phone_masked", "expires_in"}
    assert started["phone_masked"] == mask_phone("+15550003333")

    with pytest.raises(ApiError) as err:  # the same phone, written differently, while the first waits
        await client.request("POST", "/login", body={"phone": "+1 (555) 000-3333"})
    assert err.value.status == 409 and "already waiting for its code" in str(err.value)
    assert len(gw.account_less()) == 1

    login_id = started["login_id"]
    with pytest.raises(ApiError) as err:
        await client.request("POST", f"/login/{login_id}/password", body={"password": "x"})
    assert err.value.code == "no_password_needed"
    with pytest.raises(ApiError) as err:
        await client.request("POST", f"/login/{login_id}/code", body={"code": "12a45"})
    assert err.value.status == 400
    with pytest.raises(ApiError) as err:
        await client.request("POST", "/login/no-such-login/code", body={"code": "12345"})
    assert err.value.status == 404 and "no such login, or it timed out" in str(err.value)

    done = await client.request("POST", f"/login/{login_id}/code", body={"code": " 12345 "})
    assert done["status"] == "done" and done["account"]["label"] == "three"
    with pytest.raises(ApiError) as err:  # a finished login is gone
        await client.request("POST", f"/login/{login_id}/code", body={"code": "12345"})
    assert err.value.status == 404

    # A login cancelled by the operator: its client is let go, nothing is stored.
    other = await client.request("POST", "/login", body={"phone": "+15550004444"})
    [sender4] = gw.by_phone["15550004444"]
    assert sender4.is_connected()
    assert (await client.request("DELETE", f"/login/{other['login_id']}")) == {"cancelled": True}
    assert not sender4.is_connected() and sender4.disconnects == 1
    with pytest.raises(ApiError) as err:
        await client.request("POST", f"/login/{other['login_id']}/code", body={"code": "12345"})
    assert err.value.status == 404
    assert await tg.count("accounts") == 1 and await tg.count("sessions") == 1

    # Signing in again as a user the fleet already has is refused, naming the account.
    gw.login("+15550003333", (functions.auth.SendCodeRequest, sent_code("h3b")),
             *code_try(authorization(me)), *signed_in(me))
    again = await client.request("POST", "/login", body={"phone": "+15550003333"})
    with pytest.raises(ApiError) as err:
        await client.request("POST", f"/login/{again['login_id']}/code", body={"code": "12345"})
    assert "already account 1 (three)" in str(err.value)
    assert await tg.count("accounts") == 1 and await tg.count("sessions") == 1
    assert all(not s.is_connected() for s in gw.account_less())


async def test_login_failures_are_one_line_and_leave_nothing_behind(
        tg: Tg, caplog: pytest.LogCaptureFixture) -> None:
    gw = tg.gw
    gw.login("+15550000001", (functions.auth.SendCodeRequest, sent_code("e1")),
             *code_try(ts.rpc_error(400, "PHONE_CODE_EXPIRED")))
    gw.login("+15550000002", (functions.auth.SendCodeRequest, sent_code("e2")),
             *code_try(ts.rpc_error(400, "PHONE_CODE_INVALID")) * 3)
    srp = SrpServer(PASSWORD, user_for("+15550000003", 3))
    gw.login("+15550000003", (functions.auth.SendCodeRequest, sent_code("e3")),
             *code_try(ts.rpc_error(401, "SESSION_PASSWORD_NEEDED")), *password_try(srp) * 3)
    gw.login("+15550000004", (functions.auth.SendCodeRequest, ts.rpc_error(400, "PHONE_NUMBER_BANNED")))
    gw.login("+15550000005", (functions.auth.SendCodeRequest, ts.rpc_error(420, "FLOOD_WAIT_120")))

    expired, wrong_codes, wrong_passwords, banned, flood, short, letters = await asyncio.gather(
        tg.cli("accounts", "login", "+15550000001", stdin="12345\n"),
        tg.cli("accounts", "login", "+15550000002", stdin="11111\n22222\n33333\n"),
        tg.cli("accounts", "login", "+15550000003", stdin="12345\nw1\nw2\nw3\n"),
        tg.cli("accounts", "login", "+15550000004"),
        tg.cli("accounts", "login", "+15550000005"),
        tg.cli("accounts", "login", "+12"),
        tg.cli("accounts", "login", "abc"),
    )

    assert one_error(expired) == "tgdaemon: the code expired; start the login again"
    assert one_error(banned) == f"tgdaemon: {mask_phone('+15550000004')} is banned by Telegram"
    assert "wait 120 s" in one_error(flood)
    assert "'+12'" in one_error(short, 2) and "international number like +15551234567" in one_error(short, 2)
    assert "'abc'" in one_error(letters, 2)
    for result, what in ((wrong_codes, "wrong code"), (wrong_passwords, "wrong 2FA password")):
        assert result.code == 2, str(result)  # what the operator typed was refused (the daemon's 400)
        lines = stderr_lines(result)
        assert len(lines) == 3 and all(what in line for line in lines), str(result)  # two re-prompts, then out
    assert srp.results == [False, False, False]
    assert all(r.out.count("signed in") == 0 for r in (expired, wrong_codes, wrong_passwords, banned, flood))

    # Nothing half-made: no account, no session, no account event; every login client let go.
    assert await tg.count("accounts") == 0 and await tg.count("sessions") == 0
    assert not [e for e in await tg.client.events(limit=1000) if e.get("account_id")]
    assert sorted(gw.by_phone) == [f"1555000000{n}" for n in range(1, 6)]  # none for the malformed phones
    for phone, senders in gw.by_phone.items():
        [sender] = senders
        sender.assert_done()
        assert not sender.is_connected() and sender.disconnects == 1, phone
    assert PASSWORD not in caplog.text


async def test_a_login_times_out_and_a_late_code_is_refused(tg_factory: Callable[..., Any]) -> None:
    async with tg_factory(login_timeout_seconds=0.2) as tg:
        tg.gw.login("+15550006666", (functions.auth.SendCodeRequest, sent_code("h6")))
        me = user_for("+15550006666", 6666)
        tg.gw.login("+15550006666", (functions.auth.SendCodeRequest, sent_code("h6b")),
                    *code_try(authorization(me)), *signed_in(me))
        first = await tg.client.request("POST", "/login", body={"phone": "+15550006666"})
        assert first["expires_in"] == 0.2
        await asyncio.sleep(0.4)
        with pytest.raises(ApiError) as err:
            await tg.client.request("POST", f"/login/{first['login_id']}/code", body={"code": "12345"})
        assert err.value.status == 404 and "no such login, or it timed out" in str(err.value)
        # A new login for the phone is not refused by the dead one, which is let go by then.
        again = await tg.client.request("POST", "/login", body={"phone": "+15550006666"})
        old, new = tg.gw.by_phone["15550006666"]
        assert not old.is_connected() and old.disconnects == 1
        assert not old.calls_of(functions.auth.SignInRequest)  # the late code never reached Telegram
        done = await tg.client.request("POST", f"/login/{again['login_id']}/code", body={"code": "12345"})
        assert done["status"] == "done"
        assert new.calls_of(functions.auth.SignInRequest)[0].phone_code_hash == "h6b"


async def test_a_timed_out_login_lets_its_client_go(tg_factory: Callable[..., Any]) -> None:
    async with tg_factory(login_timeout_seconds=0.2) as tg:
        tg.gw.login("+15550007777", (functions.auth.SendCodeRequest, sent_code("h7")))
        started = await tg.client.request("POST", "/login", body={"phone": "+15550007777"})
        await asyncio.sleep(0.4)
        with pytest.raises(ApiError):
            await tg.client.request("POST", f"/login/{started['login_id']}/code", body={"code": "12345"})
        [sender] = tg.gw.by_phone["15550007777"]
        assert not sender.is_connected()


async def test_two_logins_started_together_for_one_phone_send_one_code(tg: Tg) -> None:
    gw = tg.gw
    for h in ("r1", "r2"):
        gw.login("+15550008888", (functions.auth.SendCodeRequest, sent_code(h)))
    gw.send_code_seen, gw.send_code_gate = asyncio.Event(), asyncio.Event()
    first = asyncio.create_task(tg.client.request("POST", "/login", body={"phone": "+15550008888"}))
    await asyncio.wait_for(gw.send_code_seen.wait(), 5)  # the first is waiting for Telegram's answer
    gw.send_code_seen.clear()
    second = asyncio.create_task(tg.client.request("POST", "/login", body={"phone": "+15550008888"}))
    seen = asyncio.create_task(gw.send_code_seen.wait())
    await asyncio.wait({second, seen}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    seen.cancel()
    gw.send_code_gate.set()
    results = await asyncio.gather(first, second, return_exceptions=True)
    assert isinstance(results[0], dict)
    assert isinstance(results[1], ApiError) and results[1].status == 409, results[1]
    assert len(gw.by_phone["15550008888"]) == 1


async def test_the_account_comes_from_sign_in_itself(tg: Tg) -> None:
    """No get_me after sign-in: a failure there would lose a finished login; sign-in's answer has the user."""
    me = user_for("+15550009999", 9999)
    tg.gw.login("+15550009999", (functions.auth.SendCodeRequest, sent_code("h9")),
                *code_try(authorization(me)), *signed_in(me))
    started = await tg.client.request("POST", "/login", body={"phone": "+15550009999"})
    done = await tg.client.request("POST", f"/login/{started['login_id']}/code", body={"code": "12345"})
    assert done["status"] == "done" and done["account"]["phone_masked"] == "+155******99"
    sent = tg.gw.by_phone["15550009999"][0].requests
    after_sign_in = sent[[type(r) for r in sent].index(functions.auth.SignInRequest) + 1:]
    assert not any(is_get_self(r) for r in after_sign_in)


# -- import ----------------------------------------------------------------------------------------


def sqlite_session(path: Path, dc_id: int, server: str, port: int, key: bytes) -> Path:
    """A real Telethon .session file (SQLite), as Telethon itself writes it."""
    session = SQLiteSession(str(path.with_suffix("")))
    session.set_dc(dc_id, server, port)
    session.auth_key = AuthKey(key)
    session.save()
    session.close()
    assert path.exists()
    return path


def string_session(dc_id: int, server: str, port: int, key: bytes) -> str:
    session = StringSession()
    session.set_dc(dc_id, server, port)
    session.auth_key = AuthKey(key)
    return session.save()


@dataclass
class Sessions:
    """The operator's files: three good sessions, one garbage line, two corrupt files."""

    root: Path
    keys: dict[str, bytes]
    dcs: dict[str, tuple[int, str, int]]
    users: dict[str, Any]
    alpha: Path = Path()
    strings: Path = Path()
    corrupt: Path = Path()
    broken: Path = Path()

    @classmethod
    def make(cls, root: Path) -> Sessions:
        root.mkdir(parents=True, exist_ok=True)
        keys = {name: os.urandom(256) for name in ("alpha", "bravo", "charlie")}
        dcs = {"alpha": (4, "149.154.167.92", 8443), "bravo": (5, "91.108.56.131", 443),
               "charlie": (1, "149.154.175.59", 80)}
        users = {"alpha": ts.user(id=5001, phone="15557770001", first_name="Zed", last_name="Alpha"),
                 "bravo": ts.user(id=5002, phone="15557770002", first_name="Yan", last_name="Bravo"),
                 "charlie": ts.user(id=5003, phone="15557770003", first_name="Xia", last_name="Charlie")}
        s = cls(root, keys, dcs, users)
        s.alpha = sqlite_session(root / "alpha.session", *dcs["alpha"], keys["alpha"])
        s.strings = root / "strings.txt"
        s.strings.write_text(f"{string_session(*dcs['bravo'], keys['bravo'])}\tBravo one\n"
                             "this is not a session\n"
                             f"{string_session(*dcs['charlie'], keys['charlie'])}\n")
        s.corrupt = root / "corrupt.session"
        s.corrupt.write_bytes(bytes(range(256)) * 4)
        s.broken = root / "broken.session"
        s.broken.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8)  # the header, then junk
        return s

    def secrets(self) -> list[str]:
        return [s for key in self.keys.values() for s in secrets_of(key)]


async def test_import_checks_each_session_keeps_its_dc_and_skips_the_corrupt(
        tg: Tg, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = Sessions.make(tmp_path / "in")
    for name, key in files.keys.items():
        tg.gw.keys[key] = files.users[name]
    nocheck = tmp_path / "in" / "spare.txt"
    spare_key = os.urandom(256)
    nocheck.write_text(string_session(3, "149.154.175.100", 443, spare_key) + "\tspare\n")

    result, unchecked = await asyncio.gather(
        tg.cli("accounts", "import", "--label-prefix", "fleet-", str(files.alpha), str(files.strings),
               str(files.corrupt), str(files.broken)),
        tg.cli("accounts", "import", "--no-check", "--probe", str(nocheck)))

    assert result.code == 1, str(result)  # some were skipped
    assert result.out.strip().splitlines()[-1] == "imported 3, skipped 3", str(result)
    skipped = result.err.splitlines()
    assert len(skipped) == 3, str(result)
    assert f"skipped {files.strings}:2: neither a Telethon nor a Pyrogram string session" in skipped
    assert any(line.startswith(f"skipped {files.corrupt}: ") for line in skipped)
    assert any(line.startswith(f"skipped {files.broken}: a damaged SQLite file") for line in skipped), skipped

    accounts = {a["label"]: a for a in await tg.client.all_accounts()}
    assert set(accounts) == {"fleet-alpha", "fleet-Bravo one", "fleet-strings-3", "spare"}
    for label, name in (("fleet-alpha", "alpha"), ("fleet-Bravo one", "bravo"), ("fleet-strings-3", "charlie")):
        account = accounts[label]
        user = files.users[name]
        row = await tg.account_row(account["id"])
        assert (row["phone"], row["tg_user_id"], row["is_probe"]) == (f"+{user.phone}", user.id, 0), label
        assert account["phone_masked"] == mask_phone(f"+{user.phone}")
        stored = await tg.store.load_session(account["id"])
        assert (stored.dc_id, stored.server, stored.port, stored.auth_key) == (*files.dcs[name], files.keys[name])
        assert f"imported as account {account['id']} ({label}, {account['phone_masked']})" in result.out

    # Each was checked with get_me on a client connected to the session's own DC, then let go.
    assert len(tg.gw.checks) == 3
    for sender in tg.gw.checks:
        [get_users] = sender.calls
        assert is_get_self(get_users)
        name = next(n for n, k in files.keys.items() if k == sender.auth_key.key)
        assert (sender.connection._ip, sender.connection._port) == files.dcs[name][1:]
        assert not sender.is_connected()

    # --no-check --probe: no request at all, a probe account with no phone yet.
    assert unchecked.code == 0 and unchecked.out.strip().endswith("imported 1, skipped 0"), str(unchecked)
    spare = accounts["spare"]
    assert spare["is_probe"] is True and spare["phone_masked"] is None
    assert len(tg.gw.account_less()) == 3  # the three checks; --no-check made no client
    stored = await tg.store.load_session(spare["id"])
    assert (stored.dc_id, stored.server, stored.port, stored.auth_key) == (3, "149.154.175.100", 443, spare_key)

    secrets = files.secrets() + secrets_of(spare_key)
    assert_no_secret(result.out + result.err + unchecked.out + unchecked.err, secrets, "the CLI's output")
    assert_no_secret(await tg.everything_said(), secrets, "the API")
    assert_no_secret(caplog.text, secrets, "the daemon log")


async def test_import_refuses_duplicates_and_dead_sessions(
        tg: Tg, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = Sessions.make(tmp_path / "in")
    tg.gw.keys[files.keys["alpha"]] = files.users["alpha"]
    first = await tg.cli("accounts", "import", str(files.alpha))
    assert first.code == 0 and "imported 1, skipped 0" in first.out, str(first)

    # The same session again: refused by its key before any connection (another node may be serving it: a
    # check would be a second connection on it); another session of the same Telegram user: refused by user id.
    other_key = os.urandom(256)
    tg.gw.keys[other_key] = files.users["alpha"]
    same_user = tmp_path / "in" / "same-user.txt"
    same_user.write_text(string_session(2, "149.154.167.50", 443, other_key) + "\n")
    checks = len(tg.gw.account_less())
    again = await tg.cli("accounts", "import", str(files.alpha), str(same_user))
    assert again.code == 1, str(again)
    assert "imported 0, skipped 2" in again.out
    refusals = dict(line.split(": refused: ", 1) for line in again.err.splitlines())
    assert refusals == {str(files.alpha): "that session is already account 1 (alpha)",
                        f"{same_user}:1": "that Telegram user is already account 1 (alpha)"}, str(again)
    assert len(tg.gw.account_less()) == checks + 1  # only the other key was checked on Telegram

    # A dead session (Telegram no longer knows the key): reported, not imported. Over the API this time.
    dead_key = os.urandom(256)
    tg.gw.keys[dead_key] = ts.rpc_error(401, "AUTH_KEY_UNREGISTERED")
    answer = await tg.client.request("POST", "/accounts/import", body={"sessions": [
        {"source": "dead.txt:1", "label": "dead", "dc_id": 2, "server": "149.154.167.51", "port": 443,
         "auth_key": base64.b64encode(dead_key).decode()}]})
    [dead] = answer["results"]
    assert dead["ok"] is False and dead["source"] == "dead.txt:1"
    assert dead["error"].startswith("check failed:") and "AUTH_KEY_UNREGISTERED" in dead["error"], dead
    with pytest.raises(ApiError) as err:  # a key that is not 256 bytes never reaches Telegram
        await tg.client.request("POST", "/accounts/import", body={"sessions": [
            {"source": "short", "dc_id": 2, "server": "149.154.167.51", "port": 443,
             "auth_key": base64.b64encode(dead_key[:100]).decode()}]})
    assert err.value.status == 400 and "sessions.0.auth_key" in str(err.value)
    assert base64.b64encode(dead_key[:100]).decode() not in str(err.value)

    assert await tg.count("accounts") == 1 and await tg.count("sessions") == 1
    assert (await tg.store.load_session(1)).auth_key == files.keys["alpha"]
    secrets = secrets_of(files.keys["alpha"]) + secrets_of(other_key) + secrets_of(dead_key)
    assert_no_secret(first.out + first.err + again.out + again.err, secrets, "the CLI's output")
    assert_no_secret(json.dumps(answer) + await tg.everything_said(), secrets, "the API")
    assert_no_secret(caplog.text, secrets, "the daemon log")


async def test_import_fills_in_the_name(tg: Tg, tmp_path: Path) -> None:
    files = Sessions.make(tmp_path / "in")
    tg.gw.keys[files.keys["alpha"]] = files.users["alpha"]
    result = await tg.cli("accounts", "import", str(files.alpha))
    assert result.code == 0, str(result)
    row = await tg.account_row(1)
    shown = json.dumps(await tg.client.account(1)) + json.dumps(list(row))
    assert "Zed" in shown and "Alpha" in shown  # first and last name (the label is lower-case "alpha")


def test_a_string_session_with_no_key_is_a_skipped_line(tmp_path: Path) -> None:
    good = string_session(2, "149.154.167.51", 443, os.urandom(256))
    keyless = good[0] + base64.urlsafe_b64encode(base64.urlsafe_b64decode(good[1:])[:-256] + bytes(256)).decode()
    path = tmp_path / "mixed.txt"
    path.write_text(f"{keyless}\n{good}\n")
    items, problems = read_sessions(path, "")
    assert [i["source"] for i in items] == [f"{path}:2"]
    assert len(problems) == 1 and problems[0].startswith(f"{path}:1: "), problems


# -- the simulator -----------------------------------------------------------------------------------


async def test_the_simulator_daemon_refuses_login_and_import_in_one_line(
        running_daemon: Any, tmp_path: Path) -> None:
    daemon, client = running_daemon
    files = Sessions.make(tmp_path / "in")
    env = isolated_env(tmp_path)
    sock = str(daemon.cfg.socket_path())

    async def cli(*args: str) -> CliResult:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tgdaemon", *args, "--socket", sock, env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(b"12345\n"), CLI_TIMEOUT)
        return CliResult(args, proc.returncode or 0, out.decode(), err.decode())

    before = await client.status()
    login, imported = await asyncio.gather(cli("accounts", "login", "+15551234567"),
                                           cli("accounts", "import", str(files.alpha)))
    for result in (login, imported):
        line = one_error(result)
        assert "simulator" in line and "[telegram] api_id and api_hash" in line, line
        assert result.out == ""
    with pytest.raises(ApiError) as err:
        await client.request("POST", "/login", body={"phone": "+15551234567"})
    assert err.value.status == 409 and "api_id and api_hash" in str(err.value)
    assert (await client.status())["accounts"] == before["accounts"]
