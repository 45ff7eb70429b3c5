"""A plugin job (Shopify's store sync, through SyncContext) gets the connection's scoped limiter and,
once it has read the shop, stores the throttle scopes it verified, like the core's own syncs."""

from __future__ import annotations

from typing import Any

from metricx_shopify.jobs import enqueue_store_sync
from shopify_helpers import fetch_one

from core import AccountRef, Credentials
from core.testing.harness import get_registry, scope_keys

CONN = "SELECT * FROM connections WHERE id = :c"


async def test_store_sync_records_the_verified_scopes(
    new_shop: Any, shop_connection: Any, shopify_sim: Any, run_worker: Any, redis_client: Any
) -> None:
    spec = new_shop(products=2, customers=2, orders=3)
    ws, conn = await shop_connection(spec)
    assert (await fetch_one(CONN, c=conn)).throttle_scopes == []  # nothing verified before a sync

    await enqueue_store_sync(str(conn), str(ws), redis=redis_client)
    await run_worker()

    row = await fetch_one(CONN, c=conn)
    assert row.sync_status == "idle"
    provider = get_registry().provider("shopify")
    account = AccountRef(str(conn), str(ws), spec.domain, config={"shop_domain": spec.domain})
    keys = scope_keys(provider, account, Credentials(access_token=spec.token))
    # The shop was read with this token: its account scope is now trusted, next to the token's.
    assert row.throttle_scopes == keys.verified().shared()
    assert {k.split(":")[1] for k in row.throttle_scopes} == {"account", "token"}
    again = scope_keys(provider, account, Credentials(spec.token), trusted=row.throttle_scopes)
    assert again.account_verified
    # Keyed digests only: neither the token nor the shop's domain is stored.
    assert not any(spec.token in k or spec.domain in k for k in row.throttle_scopes)
