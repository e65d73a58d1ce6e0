"""Control routes for login and import; the logic is in ``tgdaemon.onboarding``."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Annotated

import msgspec
from aiohttp import web

from tgdaemon import onboarding
from tgdaemon.control.devices import DeviceBody
from tgdaemon.errors import ApiError
from tgdaemon.httpjson import json_response, read_body
from tgdaemon.runtime import RUNTIME
from tgdaemon.store import Device, SessionData
from tgdaemon.wire import Cancelled, ImportResults, LoginStarted, LoginStep

Label = Annotated[str, msgspec.Meta(max_length=100)]


ProxyId = Annotated[int, msgspec.Meta(ge=1, le=2**62)]


class LoginBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    phone: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    label: Label = ""
    probe: bool = False
    proxy: ProxyId | None = None  # the account's own proxy, from this very login on


class CodeBody(msgspec.Struct, forbid_unknown_fields=True):
    code: Annotated[str, msgspec.Meta(pattern=r"^\s*\d{4,8}\s*$")]


class PasswordBody(msgspec.Struct, forbid_unknown_fields=True):
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class ImportItem(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    source: Annotated[str, msgspec.Meta(max_length=1000)]
    label: Label = ""
    dc_id: Annotated[int, msgspec.Meta(ge=1, le=1000)]
    server: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    auth_key: Annotated[str, msgspec.Meta(min_length=1, max_length=400)]  # base64 of 256 bytes
    device: DeviceBody | None = None  # the app and device the session was made with (a sidecar, the options)
    phone: Annotated[str, msgspec.Meta(pattern=r"^\+[1-9]\d{6,14}$")] | None = None  # a sidecar's
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None  # a sidecar's 2FA: save_2fa only


class ImportBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    sessions: Annotated[list[ImportItem], msgspec.Meta(min_length=1, max_length=2000)]
    probe: bool = False
    check: bool = True
    dry_run: bool = False  # say what would be imported and what is a duplicate; write nothing, connect nowhere
    save_2fa: bool = False  # add the sessions' 2FA passwords to [setup.2fa] password_file
    proxy: ProxyId | None = None  # every imported account's own proxy, its check already through it


def session_data(item: ImportItem, index: int) -> SessionData:
    try:
        key = base64.b64decode(item.auth_key, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 256:
        raise ApiError(f"body sessions.{index}.auth_key: not a base64 256-byte auth key", code="invalid_body")
    return SessionData(item.dc_id, item.server, item.port, key)


async def start_login(request: web.Request) -> web.Response:
    body = await read_body(request, LoginBody)
    rt = request.config_dict[RUNTIME]
    started = await rt.onboarding.start_login(body.phone, body.label.strip(), body.probe, proxy=body.proxy)
    return json_response(msgspec.convert(started, LoginStarted))


async def submit_code(request: web.Request) -> web.Response:
    body = await read_body(request, CodeBody)
    rt = request.config_dict[RUNTIME]
    step = await rt.onboarding.submit_code(request.match_info["login_id"], body.code)
    return json_response(msgspec.convert(step, LoginStep))


async def submit_password(request: web.Request) -> web.Response:
    body = await read_body(request, PasswordBody)
    rt = request.config_dict[RUNTIME]
    step = await rt.onboarding.submit_password(request.match_info["login_id"], body.password)
    return json_response(msgspec.convert(step, LoginStep))


async def cancel_login(request: web.Request) -> web.Response:
    await request.config_dict[RUNTIME].onboarding.cancel_login(request.match_info["login_id"])
    return json_response(Cancelled(cancelled=True))


async def import_sessions(request: web.Request) -> web.Response:
    body = await read_body(request, ImportBody)
    rt = request.config_dict[RUNTIME]
    password_file = None
    if body.save_2fa:
        if not rt.cfg.setup.twofa.password_file:
            raise ApiError("save_2fa: [setup.2fa] password_file is not set in the daemon's config; nothing imported",
                           status=409, code="no_password_file")
        password_file = Path(rt.cfg.setup.twofa.password_file).expanduser()
    elif any(item.password for item in body.sessions):
        raise ApiError("a 2FA password is sent only with save_2fa", code="invalid_body")
    items = [onboarding.ImportItem(item.source, item.label.strip() or item.source[-100:],  # a label's length
                                   session_data(item, n), item.device.device() if item.device else Device(),
                                   item.phone, item.password)
             for n, item in enumerate(body.sessions)]
    results = await rt.onboarding.import_sessions(items, probe=body.probe, check=body.check, dry_run=body.dry_run,
                                                  password_file=password_file, proxy=body.proxy)
    return json_response(msgspec.convert({"results": results}, ImportResults))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/login", start_login)
    app.router.add_post("/login/{login_id}/code", submit_code)
    app.router.add_post("/login/{login_id}/password", submit_password)
    app.router.add_delete("/login/{login_id}", cancel_login)
    app.router.add_post("/accounts/import", import_sessions)
