"""The store itself on both drivers: what it says it is, and a schema that holds design section 3's data
model, table by table, under the same names (what the store copy and this suite's backdoor rely on)."""

from __future__ import annotations

from pathlib import Path

from store import backdoor
from tgdaemon.store import Store
from tgdaemon.store.sqlite import SQLiteStore

# Design section 3, table by table, with the columns the design names (``usage`` holds the claims'
# daily caps; ``entities`` is the per-account entity cache).
DESIGN_COLUMNS: dict[str, set[str]] = {
    "accounts": {"id", "phone", "label", "is_active", "is_probe", "disabled_at", "disabled_reason",
                 "cooldown_until", "cooldown_reason", "executor", "profile_json", "created_at", "last_ok_at"},
    "sessions": {"account_id", "dc_id", "server", "port", "auth_key", "updated_at"},
    "entities": {"account_id", "peer_id", "access_hash", "username"},
    "account_tasks": {"id", "account_id", "task_type", "payload_json", "status", "attempts", "retry_at",
                      "last_error_code", "last_error", "created_at", "updated_at"},
    "quotas": {"id", "name", "target", "action", "last_n_posts", "quantity_total", "quantity_left",
               "orders_left", "per_call", "interval_seconds", "expires_at", "next_run_at", "paused",
               "cursor", "last_error"},
    "tasks": {"id", "subject_type", "subject_id", "account_id", "action", "target", "post_id", "status",
              "lease_token", "leased_by", "lease_expires_at", "lease_count", "result_json", "error_code",
              "created_at", "reported_at"},
    "account_locks": {"account_id", "holder", "expires_at"},
    "usage": {"account_id"},
    "measurements": {"quota_id", "post_id", "observed_at", "views", "forwards", "replies", "reactions"},
    "providers": {"name", "token_hash", "created_at", "last_seen_at", "revoked_at"},
    "events": {"id", "at", "kind", "account_id", "task_id", "quota_id", "message"},
}


async def test_fresh_store_has_the_whole_data_model(store: Store) -> None:
    for table, cols in DESIGN_COLUMNS.items():
        have = await backdoor.columns(store, table)
        assert cols <= have, (table, cols - have)


async def test_both_drivers_have_the_same_columns_in_every_table(store: Store, tmp_path: Path) -> None:
    """Column for column, so a row copied between the drivers (``tgdaemon store copy``) loses nothing."""
    reference = await SQLiteStore.open(tmp_path / "reference.sqlite3")
    try:
        for table in [*DESIGN_COLUMNS, "meta"]:
            assert await backdoor.columns(store, table) == await backdoor.columns(reference, table), table
    finally:
        await reference.close()


async def test_the_store_says_what_it_is(store: Store) -> None:
    assert store.kind in ("sqlite", "postgresql")
    assert store.url.startswith("sqlite:///" if store.kind == "sqlite" else "postgresql://")
    assert (store.failure, store.synchronous) == (None, "full")
