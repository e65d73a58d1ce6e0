"""Control routes for an account's own app and device parameters (``accounts set-device``, ``accounts
show``); the api_hash goes in and is never sent back but masked."""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from tgdaemon.config import TelegramConfig
from tgdaemon.control.ids import path_id
from tgdaemon.errors import ApiError
from tgdaemon.httpjson import json_response, read_body
from tgdaemon.runtime import RUNTIME
from tgdaemon.store import DEVICE_FIELDS, Device, Store
from tgdaemon.store.views import device_view, effective_device
from tgdaemon.wire import AccountDevice, DeviceSet

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]
MAX_IDS = 100_000


class DeviceBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Each field None: not given (``set-device``: left as it is; an import: [telegram]'s)."""

    api_id: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)] | None = None
    api_hash: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-fA-F]{32}$")] | None = None
    device_model: Text | None = None
    system_version: Text | None = None
    app_version: Text | None = None
    lang_code: Text | None = None
    system_lang_code: Text | None = None

    def device(self) -> Device:
        return Device(**{name: getattr(self, name) for name in DEVICE_FIELDS})


class SetDeviceBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    ids: Annotated[list[Annotated[int, msgspec.Meta(ge=1, le=2**62)]], msgspec.Meta(min_length=1, max_length=MAX_IDS)]
    device: DeviceBody = msgspec.field(default_factory=DeviceBody)
    reset: bool = False  # every field not given goes back to [telegram]'s


def config_device(cfg: TelegramConfig) -> Device:
    """What an account without parameters of its own presents: [telegram]'s."""
    return Device(cfg.api_id or None, cfg.api_hash or None, cfg.device_model, cfg.system_version, cfg.app_version,
                  cfg.lang_code, cfg.system_lang_code)


async def account_device(store: Store, cfg: TelegramConfig, account_id: int) -> AccountDevice:
    await store.get_account(account_id)  # NotFound for an account that is not there
    own, default = (await store.client_params(account_id)).device, config_device(cfg)
    return msgspec.convert({"account_id": account_id, "own": device_view(own), "default": device_view(default),
                            "effective": device_view(effective_device(own, default))}, AccountDevice)


async def get_device(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    return json_response(await account_device(rt.store, rt.cfg.telegram, path_id(request)))


async def set_device(request: web.Request) -> web.Response:
    """The accounts' clients are let go, so their next connection presents the new device (a call in flight
    on one fails as a network error and is retried)."""
    body = await read_body(request, SetDeviceBody)
    device = body.device.device()
    if not body.reset and not device.given():
        raise ApiError("body device: nothing to set; give a field, or reset", code="invalid_body")
    rt = request.config_dict[RUNTIME]
    changed = await rt.store.set_device(body.ids, device, replace=body.reset)
    ids = sorted(set(body.ids))
    for account_id in ids:
        await rt.gateway.forget(account_id)
    shown = [await account_device(rt.store, rt.cfg.telegram, account_id) for account_id in ids[:100]]
    return json_response(DeviceSet(changed=changed, accounts=shown))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/accounts/{id}/device", get_device)
    app.router.add_post("/accounts/device", set_device)
