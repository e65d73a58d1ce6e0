"""Both drivers implement the whole interface of tgdaemon/store/api.py: every member of ``Store`` and ``Tx``,
with the same parameters. A method added to the interface and to one driver only fails here, not the first
time a daemon on the other store calls it."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from tgdaemon.store import api
from tgdaemon.store.postgres import PostgresStore
from tgdaemon.store.postgres.core import Tx as PostgresTx
from tgdaemon.store.sqlite import SQLiteStore
from tgdaemon.store.sqlite.core import Tx as SQLiteTx

DRIVER_CLASSES = [(api.Store, SQLiteStore), (api.Store, PostgresStore), (api.Tx, SQLiteTx), (api.Tx, PostgresTx)]


def methods(protocol: type) -> dict[str, Callable[..., Any]]:
    return {name: value for name, value in vars(protocol).items() if not name.startswith("_") and callable(value)}


def attributes(protocol: type) -> set[str]:
    """The data members (annotated, not methods): set on an instance, so checked on an opened store."""
    annotated = {name for name in protocol.__annotations__ if not name.startswith("_")}
    return annotated | {name for name, value in vars(protocol).items() if isinstance(value, property)}


def parameters(f: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    """Names, kinds and defaults; a default the interface leaves as ``...`` is the driver's to choose."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(f).parameters.values()]


def same_parameters(driver: Callable[..., Any], interface: Callable[..., Any]) -> bool:
    have, want = parameters(driver), parameters(interface)
    return len(have) == len(want) and all(
        (h[0], h[1]) == (w[0], w[1]) and (w[2] is Ellipsis or h[2] == w[2]) for h, w in zip(have, want, strict=True))


def test_the_interface_is_not_empty() -> None:
    """What the checks below walk: a way of listing members that found nothing would prove nothing."""
    assert {"events_after", "last_event_id", "recent_events", "quotas_by_id", "prune_events", "tx"} <= set(
        methods(api.Store))
    assert {"url", "kind", "on_commit"} <= attributes(api.Store)
    assert {"touch", "touch_quota", "event", "events_many", "set_meta"} <= set(methods(api.Tx))
    assert attributes(api.Tx) == {"accounts", "quotas", "events"}


@pytest.mark.parametrize(("protocol", "cls"), DRIVER_CLASSES,
                         ids=["sqlite-store", "postgresql-store", "sqlite-tx", "postgresql-tx"])
def test_every_method_of_the_interface_is_defined_with_its_parameters(protocol: type, cls: type) -> None:
    missing, different = [], []
    for name, interface in methods(protocol).items():
        driver = inspect.getattr_static(cls, name, None)
        if driver is None:
            missing.append(name)
            continue
        if isinstance(driver, property):  # a data member the interface spells as a method: none today
            different.append(name)
            continue
        driver = getattr(cls, name)
        if not same_parameters(driver, interface) or (
                inspect.iscoroutinefunction(driver) != inspect.iscoroutinefunction(interface)):
            different.append(f"{name}{inspect.signature(driver)} vs {name}{inspect.signature(interface)}")
    assert missing == [], f"{cls.__module__}.{cls.__qualname__} lacks {missing}"
    assert different == [], f"{cls.__module__}.{cls.__qualname__}: {different}"


async def test_an_opened_store_and_its_transaction_have_every_data_member(store: api.Store) -> None:
    assert [name for name in attributes(api.Store) if not hasattr(store, name)] == []
    assert [name for name in methods(api.Store) if not callable(getattr(store, name, None))] == []
    async with store.tx() as tx:
        assert [name for name in attributes(api.Tx) if not hasattr(tx, name)] == []
        assert (tx.accounts, tx.quotas, tx.events) == (set(), set(), [])
