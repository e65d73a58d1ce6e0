"""Bringing accounts in: interactive login, and import of existing sessions.

A login keeps its client (and so the code hash) in memory until sign-in ends
or ``telegram.login_timeout_seconds`` passes; nothing is written to the store
until the account is fully signed in, so a failed login leaves nothing
half-made behind. Both paths need real Telegram: the simulator seeds its own
accounts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from telethon import TelegramClient, errors
from telethon.tl import types

from tgdaemon.classify import classify
from tgdaemon.errors import ApiError, Conflict
from tgdaemon.gateway.base import Gateway
from tgdaemon.gateway.telegram import TelethonGateway, me_from_user
from tgdaemon.logredact import REDACTOR
from tgdaemon.setup.secrets import PasswordFileError, add_password
from tgdaemon.store import (
    ClientParams,
    Device,
    NewAccount,
    ProxyTarget,
    SessionData,
    Store,
    mask_phone,
)
from tgdaemon.store.views import shown_proxy

log = logging.getLogger(__name__)
PHONE = re.compile(r"^\+[1-9]\d{6,14}$")
IMPORT_CONCURRENCY = 8
NEEDS_TELEGRAM = ("this daemon runs on the simulator, which seeds its own accounts; login and import need "
                  "[telegram] api_id and api_hash in the config")


def normalize_phone(raw: str) -> str:
    phone = re.sub(r"[\s\-().]", "", raw)
    if not phone.startswith("+"):
        phone = "+" + phone
    if not PHONE.match(phone):
        raise ApiError(f"phone {raw!r}: expected an international number like +15551234567", code="invalid_phone")
    return phone


def telethon_gateway(gateway: Gateway) -> TelethonGateway:
    if not isinstance(gateway, TelethonGateway):
        raise Conflict(NEEDS_TELEGRAM)
    return gateway


def login_error(exc: BaseException, phone: str) -> tuple[str, bool]:
    """(one line for the operator, whether the login can go on) for an error during sign-in."""
    masked = mask_phone(phone)
    if isinstance(exc, errors.PhoneCodeInvalidError):
        return "wrong code; enter the code again", True
    if isinstance(exc, errors.PasswordHashInvalidError):
        return "wrong 2FA password; enter it again", True
    if isinstance(exc, errors.PhoneCodeExpiredError):
        return "the code expired; start the login again", False
    if isinstance(exc, errors.PhoneNumberInvalidError):
        return f"{masked}: Telegram says this is not a valid phone number", False
    if isinstance(exc, errors.PhoneNumberBannedError):
        return f"{masked} is banned by Telegram", False
    if isinstance(exc, errors.PhoneNumberUnoccupiedError):
        return f"no Telegram account uses {masked} (tgfleet does not sign up new accounts)", False
    if isinstance(exc, (errors.FloodWaitError, errors.FloodPremiumWaitError)):
        return f"Telegram asks to wait {exc.seconds} s before another login attempt", False
    return f"login failed: {classify(exc).message}", False


@dataclass(frozen=True)
class ImportItem:
    """One session to import, with what its files said about it."""

    source: str
    label: str
    session: SessionData
    device: Device = Device()
    phone: str | None = None
    password: str | None = field(default=None, repr=False)  # a sidecar's 2FA password, with --save-2fa only


@dataclass
class PendingLogin:
    client: TelegramClient
    phone: str
    phone_code_hash: str
    label: str
    probe: bool
    expires: float
    needs_password: bool = False
    proxy_id: int | None = None


class Onboarding:
    def __init__(self, store: Store, gateway: Gateway, login_timeout: float) -> None:
        self.store = store
        self.gateway = gateway
        self.login_timeout = login_timeout
        self._logins: dict[str, PendingLogin] = {}
        self._starting: set[str] = set()
        self._password_file = asyncio.Lock()

    async def _proxy(self, proxy_id: int | None) -> ProxyTarget | None:
        """The account's own proxy to be, as the gateway connects through it; NotFound for no such proxy, and a
        dead one is refused before anything goes out (through it, or around it)."""
        if proxy_id is None:
            return None
        [proxy] = await self.store.proxy_targets([proxy_id])
        if proxy.state == "dead":
            raise Conflict(f"proxy {proxy.id} ({shown_proxy(proxy.scheme, proxy.host, proxy.port)}) was found dead at"
                           f" its last check; check it again with `tgdaemon proxies check {proxy.id}`, or choose another")
        return proxy

    async def start_login(self, phone: str, label: str, probe: bool, *, proxy: int | None = None) -> dict[str, Any]:
        gw = telethon_gateway(self.gateway)
        phone = normalize_phone(phone)
        target = await self._proxy(proxy)
        await self.expire_logins()
        if phone in self._starting or any(p.phone == phone for p in self._logins.values()):
            raise Conflict(f"a login for {mask_phone(phone)} is already waiting for its code")
        self._starting.add(phone)  # before the first await: two logins at once for one phone send one code
        # the configured server's session (else Telethon's default), through the account's own proxy if it has one
        client = gw.new_client(gw.login_session(), ClientParams(proxy=target))
        try:
            await asyncio.wait_for(client.connect(), gw.cfg.connect_timeout_seconds)
            sent = await asyncio.wait_for(client.send_code_request(phone), gw.cfg.call_timeout_seconds)
        except Exception as exc:
            await _disconnect(client)
            raise ApiError(login_error(exc, phone)[0], status=409, code="login_failed") from None
        finally:
            self._starting.discard(phone)
        login_id = secrets.token_urlsafe(12)
        self._logins[login_id] = PendingLogin(client, phone, sent.phone_code_hash, label or phone, probe,
                                              time.monotonic() + self.login_timeout, proxy_id=proxy)
        return {"login_id": login_id, "phone_masked": mask_phone(phone), "expires_in": self.login_timeout}

    async def submit_code(self, login_id: str, code: str) -> dict[str, Any]:
        pending = await self._pending(login_id)
        try:
            user = await asyncio.wait_for(
                pending.client.sign_in(pending.phone, code.strip(), phone_code_hash=pending.phone_code_hash),
                self._call_timeout())
        except errors.SessionPasswordNeededError:
            pending.needs_password = True
            return {"status": "password_needed"}
        except Exception as exc:
            await self._fail(login_id, exc)
        return await self._finish(login_id, user)

    async def submit_password(self, login_id: str, password: str) -> dict[str, Any]:
        pending = await self._pending(login_id)
        if not pending.needs_password:
            raise ApiError("this login has not asked for a 2FA password", status=409, code="no_password_needed")
        with REDACTOR.secret(password):  # also while a failure is logged
            try:
                user = await asyncio.wait_for(pending.client.sign_in(password=password), self._call_timeout())
            except Exception as exc:
                await self._fail(login_id, exc)
        return await self._finish(login_id, user)

    async def cancel_login(self, login_id: str) -> None:
        if (pending := self._logins.pop(login_id, None)) is not None:
            await _disconnect(pending.client)

    async def expire_logins(self) -> None:
        now = time.monotonic()
        for login_id in [k for k, p in self._logins.items() if p.expires < now]:
            await self.cancel_login(login_id)

    async def close(self) -> None:
        for login_id in list(self._logins):
            await self.cancel_login(login_id)

    async def _pending(self, login_id: str) -> PendingLogin:
        pending = self._logins.get(login_id)
        if pending is not None and pending.expires < time.monotonic():
            await self.cancel_login(login_id)
            pending = None
        if pending is None:
            raise ApiError("no such login, or it timed out; start the login again", status=404, code="no_login")
        return pending

    async def run(self) -> None:
        """A side task: a login left waiting for its code is let go when it times out, client and all."""
        while True:
            await asyncio.sleep(min(30.0, self.login_timeout / 2))
            await self.expire_logins()

    def _call_timeout(self) -> float:
        return telethon_gateway(self.gateway).cfg.call_timeout_seconds

    async def _fail(self, login_id: str, exc: BaseException) -> None:
        pending = self._logins[login_id]
        message, can_go_on = login_error(exc, pending.phone)
        if not can_go_on:
            await self.cancel_login(login_id)
        raise ApiError(message, status=409 if not can_go_on else 400,
                       code="login_failed" if not can_go_on else "login_retry") from None

    async def _finish(self, login_id: str, user: Any) -> dict[str, Any]:
        """Signed in: store the account and its session in one transaction, then let the client go.

        The user comes from sign-in's own answer: asking again could fail and lose a finished login."""
        pending = self._logins.pop(login_id)
        await _disconnect(pending.client)  # the pool makes the account's one client from now on
        if not isinstance(user, types.User):
            raise ApiError("Telegram did not return the signed-in user; start the login again", status=409,
                           code="login_failed")
        me = me_from_user(user)
        session = pending.client.session.data()
        account_id = await self.store.add_account(
            NewAccount(me.phone or pending.phone, me.user_id, pending.label, pending.probe, me.first_name, me.last_name,
                       proxy_id=pending.proxy_id),
            session, how="login")
        return {"status": "done", "account": await self.store.get_account(account_id)}

    async def import_sessions(self, items: list[ImportItem], *, probe: bool, check: bool, dry_run: bool = False,
                              password_file: Path | None = None, proxy: int | None = None) -> list[dict[str, Any]]:
        """One result per item, in order; auth keys, passwords and api_hashes never appear in results.

        ``dry_run``: what would be refused as a duplicate, with nothing written and no connection made.
        ``password_file``: where a sidecar's 2FA password goes once its account is in (``--save-2fa``).
        ``proxy``: every account's own, its check already made through it."""
        gw = telethon_gateway(self.gateway)
        target = await self._proxy(proxy)
        limit = asyncio.Semaphore(IMPORT_CONCURRENCY)

        async def one(item: ImportItem) -> dict[str, Any]:
            source, data = item.source, item.session
            async with limit:
                try:
                    # Before any connect: checking a key another node serves would be a second connection on it.
                    if (known := await self.store.duplicate_of(NewAccount(item.phone, None, item.label, probe),
                                                               data)) is not None:
                        raise Conflict(known)
                    if dry_run:
                        return {"source": source, "ok": True, "label": item.label,
                                "phone_masked": mask_phone(item.phone)}
                    me = await gw.check_session(data, ClientParams(item.device, target)) if check else None
                    account = NewAccount(me.phone if me and me.phone else item.phone, me.user_id if me else None,
                                         item.label, probe, me.first_name if me else "", me.last_name if me else "",
                                         item.device, proxy_id=proxy)
                    account_id = await self.store.add_account(account, data, how="imported")
                except Conflict as exc:
                    if dry_run:
                        return {"source": source, "ok": False, "duplicate": True, "error": str(exc)}
                    return {"source": source, "ok": False, "error": f"refused: {exc}"}
                except Exception as exc:
                    return {"source": source, "ok": False, "error": f"check failed: {classify(exc).message}"}
                result = {"source": source, "ok": True, "account_id": account_id, "label": item.label,
                          "phone_masked": mask_phone(account.phone)}
                if item.password and password_file is not None:
                    result["twofa"] = await self._save_password(password_file, account.phone or str(account_id),
                                                                item.password)
                return result

        return list(await asyncio.gather(*(one(item) for item in items)))

    async def _save_password(self, path: Path, key: str, password: str) -> str:
        """What became of it, for the operator (masked key, never the password): one writer at a time."""
        shown = (mask_phone(key) or key) if key.startswith("+") else f"account {key}"
        with REDACTOR.secret(password):
            async with self._password_file:
                try:
                    added = await asyncio.to_thread(add_password, path, key, password)
                except PasswordFileError as exc:
                    return f"2FA password not saved: {str(exc).replace(key, shown)}"
                except OSError as exc:
                    return f"2FA password not saved: password_file {path}: {exc.strerror}"
        return (f"2FA password added to {path} for {shown}" if added else
                f"2FA password already in {path} for {shown}")


async def _disconnect(client: TelegramClient) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.disconnect(), 5)
