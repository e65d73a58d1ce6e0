"""The daemon's only door to its database.

Everything above this package speaks to ``Store`` methods, never to SQL, so
that a PostgreSQL store (several daemons, ``FOR UPDATE SKIP LOCKED``
leasing) can be added behind the same interface later.
"""

from tgdaemon.store.accounts import (
    SORT_KEYS,
    STATES,
    account_view,
    event_view,
    mask_phone,
)
from tgdaemon.store.clock import ClockStore
from tgdaemon.store.core import Tx
from tgdaemon.store.providers import ProviderStore
from tgdaemon.store.pulled import Finish, Generated, Generation, LeaseAsk, PulledStore, Reaped
from tgdaemon.store.quotas import ACTIONS, MEASUREMENT_FIELDS, QuotaStore
from tgdaemon.store.retention import Batch, RetentionStore
from tgdaemon.store.sessions import EntityRow, NewAccount, SessionData
from tgdaemon.store.setup import AccountEffect, ClaimedTask, SetupOutcome, SetupStore
from tgdaemon.store.stats import StatsStore


class Store(SetupStore, QuotaStore, PulledStore, ProviderStore, ClockStore, RetentionStore, StatsStore):
    """The store's whole interface."""


__all__ = ["ACTIONS", "MEASUREMENT_FIELDS", "Batch", "Finish", "Generated", "Generation", "LeaseAsk", "Reaped", "STATES", "SORT_KEYS", "AccountEffect", "ClaimedTask", "SetupOutcome", "EntityRow", "NewAccount", "SessionData", "Store", "Tx", "account_view",
           "event_view", "mask_phone"]
