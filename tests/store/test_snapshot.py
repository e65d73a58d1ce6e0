"""The stream snapshot's paged reads on both drivers: a list a keyset page at a time, in id order, that together
are the whole list, each row as the whole listing shows it."""

from __future__ import annotations

import time

from store.world import TARGET
from tgdaemon.store import Store


async def test_quotas_after_pages_through_every_quota_in_id_order(store: Store) -> None:
    ids = [await store.add_quota(name=f"q{n}", target=TARGET, action="channel_stats", last_n_posts=5, quantity=None,
                                 orders=10, interval_seconds=60, expires_at=time.time() + 3600) for n in range(5)]
    await store.set_quota_paused(ids[3], True)  # a row that changed since it was added reads as it is now
    pages, after = [], 0
    for _ in range(10):
        page = await store.quotas_after(after, 2)
        pages.append([q["id"] for q in page])
        if len(page) < 2:
            break
        after = page[-1]["id"]
    assert pages == [ids[0:2], ids[2:4], ids[4:]]
    every = await store.quotas()
    assert await store.quotas_after(0, 10) == every and every[3]["paused"]
    assert await store.quotas_after(ids[-1], 10) == []
    assert await store.quotas_after(ids[1], 1) == [every[2]]
