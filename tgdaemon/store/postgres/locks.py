"""The one per-account lock, shared by setup work and pulled tasks (see the SQLite twin for the rules).

Each function is one statement whatever the number of locks: a conditional upsert (taken when free,
expired, or already this holder's) or a delete over ``unnest`` arrays.
"""

from __future__ import annotations

from tgdaemon.store.postgres.core import Tx
from tgdaemon.timeutil import now

UPSERT = ("INSERT INTO account_locks (account_id, holder, expires_at)"
          " SELECT a, h, $3 FROM unnest($1::bigint[], $2::text[]) AS l(a, h)"
          " ON CONFLICT (account_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at"
          " WHERE account_locks.expires_at <= $4 OR account_locks.holder = excluded.holder")


async def take_lock(tx: Tx, account_id: int, holder: str, seconds: float) -> bool:
    """Take (or renew, for the same holder) the account's lock; False when another holder has it."""
    at = now()
    taken = await tx.execute(
        "INSERT INTO account_locks (account_id, holder, expires_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (account_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at"
        " WHERE account_locks.expires_at <= $4 OR account_locks.holder = excluded.holder",
        account_id, holder, at + seconds, at)
    if taken:
        tx.touch(account_id)
    return bool(taken)


async def release_lock(tx: Tx, account_id: int, holder: str) -> None:
    """Release it if this holder still has it (a lock that expired and was taken by another stays)."""
    if await tx.execute("DELETE FROM account_locks WHERE account_id = $1 AND holder = $2", account_id, holder):
        tx.touch(account_id)


async def take_locks(tx: Tx, locks: list[tuple[int, str]], seconds: float, *, must: bool = True,
                     touch: bool = True) -> None:
    """Take (or renew, for the same holder) many locks at once. ``must``: the caller has just seen them
    free or its own, in this transaction; otherwise a lock another holder has is left to it. ``touch``
    False: the caller publishes the accounts whose state changed itself (a renewal changes none)."""
    locks = list(dict.fromkeys(locks))  # one upsert may not touch a row twice; the same pair twice is one
    if not locks:
        return
    at = now()
    taken = await tx.execute(UPSERT, [a for a, _ in locks], [h for _, h in locks], at + seconds, at)
    if must and taken != len(locks):
        raise RuntimeError(f"took {taken} of {len(locks)} locks that were free in this transaction")
    for account_id, _ in locks if touch else ():
        tx.touch(account_id)


async def release_locks(tx: Tx, locks: list[tuple[int, str]]) -> None:
    """Release many; each only if its holder still has it."""
    if not locks:
        return
    await tx.execute("DELETE FROM account_locks l USING unnest($1::bigint[], $2::text[]) AS r(a, h)"
                     " WHERE l.account_id = r.a AND l.holder = r.h", [a for a, _ in locks], [h for _, h in locks])
    for account_id, _ in locks:
        tx.touch(account_id)
