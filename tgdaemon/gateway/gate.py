"""Which accounts this process may act as, asked before every Telegram call.

Several daemons share one fleet (design 9): only an account's owner may connect its client,
and the owner stops before its lease can run out. The gateway knows nothing of nodes or
leases; it asks its gate, synchronously, before it touches the network for an account, and
raises ``NotOwned`` without sending anything when the gate says no. ``tgdaemon.nodes`` keeps
the real gate; a gateway with no node behind it (tests, ``check_session``) has the open one.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

from tgdaemon.errors import NotOwned


class Gate(Protocol):
    def allows(self, account_id: int) -> bool:
        """Whether a call as this account may be made now."""

    def epoch(self, account_id: int) -> int | None:
        """The epoch this node owns the account under (its writes carry it); None when not owned."""

    def seconds_left(self) -> float:
        """How long until this node fences itself: nothing it starts (a connect) may run past that."""

    def working(self, account_id: int) -> AbstractContextManager[None]:
        """Around one unit of work as the account (a setup task, a local task, a probe's read): the node
        waits for it to end before it lets the account go to another node."""


class OpenGate:
    """Every account, always: one process on its own."""

    def allows(self, account_id: int) -> bool:
        return True

    def epoch(self, account_id: int) -> int | None:
        return None

    def seconds_left(self) -> float:
        return math.inf

    def working(self, account_id: int) -> AbstractContextManager[None]:
        return nullcontext()


def check(gate: Gate, account_id: int) -> None:
    if not gate.allows(account_id):
        raise NotOwned(f"account {account_id}: {NotOwned.__doc__}")
