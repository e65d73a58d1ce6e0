"""Per-account app and device parameters (issue 14 item 2) as a real TelegramClient sends them.

tgscript's senders see the TL objects Telethon puts on the wire: the handshake's InvokeWithLayer wrapping
InitConnection, whose fields are the device. An account with parameters of its own presents them and its
own api_id; one without presents [telegram]'s; one with only some presents its own where it has them.
"""

from __future__ import annotations

import os

import tgscript as ts
from conftest import GatewayFactory
from telethon.tl import alltlobjects, functions

from tgdaemon.gateway.base import AccountRef
from tgdaemon.store import ClientParams, Device, NewAccount, SessionData, Store

OWN = Device(api_id=611335, api_hash="0123456789abcdef0123456789abcdef", device_model="Pixel 7",
             system_version="Android 14", app_version="10.9.1", lang_code="de", system_lang_code="de-DE")
FLEET = {"device_model": "fleet-box", "system_version": "Linux 6.1", "app_version": "tgfleet 9",
         "lang_code": "en", "system_lang_code": "en-GB"}


async def add(store: Store, n: int, device: Device = Device()) -> int:
    return await store.add_account(NewAccount(f"+1555444{n:04d}", 4400 + n, f"d{n}", False, device=device),
                                   SessionData(2, ts.DC_IPS[2], 443, os.urandom(256)), how="imported")


def init_of(sender: ts.ScriptedSender) -> functions.InitConnectionRequest:
    [init] = sender.init_requests
    wrapped = sender.sent[0]  # the handshake: InvokeWithLayer(InvokeWithoutUpdates(InitConnection(GetConfig)))
    assert isinstance(wrapped, functions.InvokeWithLayerRequest) and wrapped.layer == alltlobjects.LAYER
    assert isinstance(init.query, functions.help.GetConfigRequest)
    return init


def presented(init: functions.InitConnectionRequest) -> tuple[object, ...]:
    return (init.api_id, init.device_model, init.system_version, init.app_version, init.lang_code,
            init.system_lang_code)


async def test_an_account_presents_its_own_device_and_one_without_presents_the_fleets(
        store: Store, gateways: GatewayFactory) -> None:
    own, plain = await add(store, 1, OWN), await add(store, 2)
    partial = await add(store, 3, Device(api_id=2040, device_model="Desktop"))
    gw = await gateways(**FLEET)
    for account_id in (own, plain, partial):
        sender = gw.sender(account_id)
        sender.expect(functions.users.GetUsersRequest, [sender.me])
        await gw.get_me(AccountRef(account_id))
        sender.assert_done()

    assert presented(init_of(gw.sender(own))) == (611335, "Pixel 7", "Android 14", "10.9.1", "de", "de-DE")
    assert presented(init_of(gw.sender(plain))) == (ts.API_ID, "fleet-box", "Linux 6.1", "tgfleet 9", "en", "en-GB")
    assert presented(init_of(gw.sender(partial))) == (2040, "Desktop", "Linux 6.1", "tgfleet 9", "en", "en-GB")
    [own_client], [plain_client], [partial_client] = (gw.clients[a] for a in (own, plain, partial))
    assert (own_client.api_id, own_client.api_hash) == (611335, OWN.api_hash)
    assert (plain_client.api_id, plain_client.api_hash) == (ts.API_ID, ts.API_HASH)
    assert partial_client.api_hash == ts.API_HASH  # an api_id alone: the hash serves sign-in only


async def test_a_changed_device_is_presented_by_the_accounts_next_client(store: Store,
                                                                         gateways: GatewayFactory) -> None:
    account_id = await add(store, 1)
    gw = await gateways(**FLEET)
    first = gw.sender(account_id)
    first.expect(functions.users.GetUsersRequest, [first.me])
    await gw.get_me(AccountRef(account_id))

    await store.set_device([account_id], Device(device_model="iPhone 15", system_version="iOS 17.4"), replace=False)
    await gw.forget(account_id)  # what POST /accounts/device does after the store's write
    second = gw.next_sender(account_id)
    second.expect(functions.users.GetUsersRequest, [second.me])
    await gw.get_me(AccountRef(account_id))

    assert init_of(first).device_model == "fleet-box"
    assert presented(init_of(second)) == (ts.API_ID, "iPhone 15", "iOS 17.4", "tgfleet 9", "en", "en-GB")
    assert not first.is_connected() and len(gw.clients[account_id]) == 2


async def test_the_import_check_presents_the_device_it_is_given(gateways: GatewayFactory) -> None:
    gw = await gateways(**FLEET)
    sender = gw.sender(None)  # type: ignore[arg-type]  # the account-less client of a check
    sender.expect(functions.users.GetUsersRequest, [sender.me])
    me = await gw.check_session(SessionData(4, ts.DC_IPS[4], 443, os.urandom(256)), ClientParams(OWN))
    assert me.user_id == sender.me.id
    assert presented(init_of(sender)) == (611335, "Pixel 7", "Android 14", "10.9.1", "de", "de-DE")
    assert (sender.connection._ip, sender.connection._port) == (ts.DC_IPS[4], 443)
    assert not sender.is_connected()
