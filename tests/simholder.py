"""A process that holds one simulated account's connection, for tests that kill or stop its holder.

    python tests/simholder.py STORE_URL SEED ACCOUNTS TG_USER_ID SERVER_TIMEOUT

It opens the account's connection through the store (one get_me), prints ``connected``, then answers each
line ``call`` on stdin with one get_me: ``ok`` or the exception's class name. End of input closes it.
"""

from __future__ import annotations

import asyncio
import sys

from tgdaemon.config import SimulatorConfig
from tgdaemon.gateway.base import AccountRef
from tgdaemon.gateway.simulator import Simulator
from tgdaemon.store.postgres import PostgresStore

QUIET = dict(latency_min_ms=0, latency_max_ms=0, flood_wait_rate=0.0, peer_flood_rate=0.0, transient_rate=0.0,
             dead_fraction=0.0)


async def outcome(sim: Simulator, account: AccountRef) -> str:
    try:
        await sim.get_me(account)
    except Exception as exc:  # noqa: BLE001 - the outcome is what the test reads
        return type(exc).__name__
    return "ok"


async def main(url: str, seed: int, accounts: int, tg_user_id: int, server_timeout: float) -> None:
    store = await PostgresStore.open(url)
    sim = Simulator(SimulatorConfig(seed=seed, accounts=accounts, server_timeout_seconds=server_timeout, **QUIET),
                    node="holder")
    await sim.start(store)
    account = AccountRef(id=1, tg_user_id=tg_user_id)
    try:
        print("connected" if (said := await outcome(sim, account)) == "ok" else said, flush=True)
        loop = asyncio.get_running_loop()
        while (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "call":
            print(await outcome(sim, account), flush=True)
    finally:
        await sim.close()
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])))
