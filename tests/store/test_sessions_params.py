"""An account's client parameters (issue 14): its own device and proxy where set, the defaults where not."""

from __future__ import annotations

import os

from tgdaemon.store import ClientParams, Device, NewAccount, SessionData, Store


async def test_an_account_without_its_own_device_or_proxy_gets_the_defaults(store: Store) -> None:
    account_id = await store.add_account(NewAccount(None, None, "plain", False), SessionData(2, "h", 443, os.urandom(256)),
                                         how="import")
    params = await store.client_params(account_id)
    assert params == ClientParams(Device(), None)
    assert await store.client_params(account_id + 1000) == ClientParams()
