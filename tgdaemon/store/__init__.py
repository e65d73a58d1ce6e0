"""The daemon's only door to its database.

Everything above this package speaks to the ``Store`` interface of
``tgdaemon.store.api``, never to SQL. ``open_store`` picks the driver from the
store's URL: ``sqlite:///PATH`` (the embedded default) or ``postgresql://…``.
"""

from tgdaemon.store.api import (
    DEVICE_FIELDS,
    AccountEffect,
    Batch,
    ClaimedTask,
    ClientParams,
    Device,
    EntityRow,
    Finish,
    Generated,
    Generation,
    LaneCount,
    LeaseAsk,
    Maxima,
    NewAccount,
    NewProxy,
    ProbeAccount,
    Provider,
    ProxyCheck,
    ProxyChecked,
    ProxyTarget,
    PulseCount,
    QuotaRef,
    Reaped,
    SessionData,
    SetupOutcome,
    Store,
    TaskFilter,
    TaskRetry,
    Tx,
)
from tgdaemon.store.views import (
    ACTIONS,
    MEASUREMENT_FIELDS,
    SORT_KEYS,
    STATES,
    account_view,
    event_view,
    mask_phone,
    mask_secret,
    provider_name_problem,
)

__all__ = ["ACTIONS", "DEVICE_FIELDS", "MEASUREMENT_FIELDS", "SORT_KEYS", "STATES", "AccountEffect", "Batch", "ClaimedTask", "ClientParams",
           "Device", "EntityRow",
           "Finish", "Generated", "Generation", "LeaseAsk", "Maxima", "NewAccount", "NewProxy", "ProbeAccount", "Provider",
           "ProxyCheck", "ProxyChecked", "ProxyTarget",
           "PulseCount", "QuotaRef", "Reaped", "TaskFilter", "TaskRetry", "LaneCount", "SessionData", "SetupOutcome", "Store", "Tx", "account_view", "event_view",
           "mask_phone", "mask_secret", "provider_name_problem"]
