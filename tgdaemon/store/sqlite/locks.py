"""The one per-account lock, shared by setup work and pulled tasks.

A lock row names its holder (``setup:<task id>`` or ``quota:<task id>``) and
expires: an expired lock is free, so a daemon that died holding locks blocks
nothing for longer than their lease. Taking and releasing a lock touches the
account, because the account's state (busy or not) changes with it.
"""

from __future__ import annotations

from tgdaemon.store.sqlite.core import Tx
from tgdaemon.timeutil import now

# (account, holder, expiry, now): taken when free, expired, or already this holder's (a renewal).
TAKE_LOCK = ("INSERT INTO account_locks (account_id, holder, expires_at) VALUES (?, ?, ?)"
             " ON CONFLICT (account_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at"
             " WHERE account_locks.expires_at <= ? OR account_locks.holder = excluded.holder")
RELEASE_LOCK = "DELETE FROM account_locks WHERE account_id = ? AND holder = ?"  # (account, holder)


async def take_lock(tx: Tx, account_id: int, holder: str, seconds: float) -> bool:
    """Take (or renew, for the same holder) the account's lock; False when another holder has it."""
    at = now()
    cur = await tx.execute(TAKE_LOCK, (account_id, holder, at + seconds, at))
    if cur.rowcount:
        tx.touch(account_id)
    return bool(cur.rowcount)


async def release_lock(tx: Tx, account_id: int, holder: str) -> None:
    """Release it if this holder still has it (a lock that expired and was taken by another stays)."""
    cur = await tx.execute(RELEASE_LOCK, (account_id, holder))
    if cur.rowcount:
        tx.touch(account_id)


async def take_locks(tx: Tx, locks: list[tuple[int, str]], seconds: float, *, must: bool = True,
                     touch: bool = True) -> None:
    """Take (or renew, for the same holder) many locks at once. ``must``: the caller has just seen them
    free or its own, in this transaction; otherwise a lock another holder has is left to it. ``touch``
    False: the caller publishes the accounts whose state changed itself (a renewal changes none)."""
    at = now()
    cur = await tx.conn.executemany(TAKE_LOCK, [(account_id, holder, at + seconds, at)
                                                for account_id, holder in locks])
    if must and cur.rowcount != len(locks):
        raise RuntimeError(f"took {cur.rowcount} of {len(locks)} locks that were free in this transaction")
    for account_id, _ in locks if touch else ():
        tx.touch(account_id)


async def release_locks(tx: Tx, locks: list[tuple[int, str]]) -> None:
    """Release many; each only if its holder still has it."""
    await tx.conn.executemany(RELEASE_LOCK, locks)
    for account_id, _ in locks:
        tx.touch(account_id)
