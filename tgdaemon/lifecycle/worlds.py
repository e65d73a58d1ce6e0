"""A simulated fleet keeps its world (in its store: the data dir's SQLite file, or PostgreSQL).

The simulator's accounts are fixed by a few ``[simulator]`` keys (size, seed,
the probe and dead fractions). A daemon restarted on a data dir without the
same ``--accounts`` used to build another world, in which every stored account
beyond the new size did not exist: each was disabled with
AUTH_KEY_UNREGISTERED within seconds, without a word. So the store records
its world in ``meta`` when it is seeded, and a later start takes it from there:
a key the operator left alone follows the record, a key the operator set
(flag, environment, config file) to another value is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import msgspec

from tgdaemon.errors import StoreError
from tgdaemon.gateway.simulator import Simulator
from tgdaemon.gateway.simworld import build_accounts
from tgdaemon.store import Store, Tx

log = logging.getLogger(__name__)
META_KEY = "simulator.world"
Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]


class World(msgspec.Struct, forbid_unknown_fields=True):
    """What ``meta`` holds; the same keys as simworld.WORLD_KEYS."""

    accounts: Annotated[int, msgspec.Meta(ge=1, le=200_000)]
    seed: int
    probe_fraction: Fraction
    dead_fraction: Fraction


@dataclass(frozen=True)
class Place:
    """Where a fleet is stored, as refusals name it: the data dir's own SQLite file is known by its data dir
    (another --data-dir is another fleet), any other store by its URL (another --store is)."""

    name: str  # "data dir /srv/tgfleet", "store postgresql://fleet@db/fleet"
    short: str  # "the data dir", "the store"
    other: str  # the option that picks another: "--data-dir", "--store"

    @classmethod
    def data_dir(cls, path: Path) -> Place:
        return cls(f"data dir {path}", "the data dir", "--data-dir")


async def settle(store: Store, sim: Simulator, place: Place) -> None:
    """Before the gateway starts: make ``sim`` the store's world, or refuse a start that asks for another."""
    raw = await store.get_meta(META_KEY)
    if raw is not None:
        try:
            world = msgspec.json.decode(raw, type=World)
        except msgspec.DecodeError as exc:
            raise StoreError(f"{place.name}: the recorded simulated world is unreadable ({exc});"
                             f" use another {place.other}") from None
        how = f"recorded in {place.short}"
    elif await store.count_accounts():
        world, how = await _infer(store, sim, place)
    else:
        log.info("simulator: a new world of %d accounts, seed %d (recorded when seeded)",
                 sim.cfg.accounts, sim.cfg.seed)
        return
    recorded = msgspec.structs.asdict(world)
    asked = sim.world()
    differs = [f"simulator.{key} = {asked[key]!r} ({origin})" for key, origin in sorted(sim.chosen.items())
               if asked[key] != recorded[key]]
    if differs:
        raise StoreError(
            f"{place.name} holds a simulated world of {world.accounts} accounts (seed {world.seed}), but the"
            f" daemon was started with {', '.join(differs)}; drop {'it' if len(differs) == 1 else 'them'} to keep"
            f" {place.short}'s world, or use another {place.other}")
    if raw is None:
        async with store.tx() as tx:
            await record(store, tx, recorded)
    if recorded != asked:
        sim.adopt(recorded)
    log.info("simulator: the world of %d accounts, seed %d (%s)", world.accounts, world.seed, how)


async def record(store: Store, tx: Tx, world: dict[str, object]) -> None:
    """Called in the transaction that seeds the accounts: the world and its accounts arrive together."""
    await store.set_meta(tx, META_KEY, msgspec.json.encode(world).decode())


async def _infer(store: Store, sim: Simulator, place: Place) -> tuple[World, str]:
    """A data dir seeded before worlds were recorded: its size is its account count if, with the configured
    seed, a world of that size has exactly its accounts; else the configured world becomes the record."""
    stored = await store.tg_user_ids()
    candidate = msgspec.structs.replace(sim.cfg, accounts=min(max(len(stored), 1), 200_000))
    if {a.tg_user_id for a in build_accounts(candidate)} == stored:
        return World(**{**sim.world(), "accounts": candidate.accounts}), f"inferred from {place.short}'s accounts"
    log.warning("%s: its %d accounts are not a simulated world of that size under seed %d; recording"
                " the configured world (%d accounts, seed %d)", place.name, len(stored), sim.cfg.seed,
                sim.cfg.accounts, sim.cfg.seed)
    return World(**sim.world()), "the configured world, recorded now"
