"""The plugin's registrations: provider, jobs, schedule, router, migration branch; the hourly fan-out."""

from __future__ import annotations

from typing import Any

import pytest
from metricx_shopify.jobs import scheduled_shopify_sync
from shopify_helpers import fetch_all

from core.testing.harness import get_settings, load_registry


def test_the_plugin_registers_its_provider_jobs_schedule_router_and_branch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from metricx_shopify.settings import get_shopify_settings

    monkeypatch.setenv("METRICX_SHOPIFY_SYNC_CRON", "*/30 * * * *")
    get_shopify_settings.cache_clear()
    try:
        registry = load_registry(load="shopify")
    finally:
        get_shopify_settings.cache_clear()
    assert registry.provider("shopify").capabilities.levels == ("store", "store_refunds", "store_pending")
    jobs = {"process_shopify_sync_job", "shopify.scheduled_sync", "shopify.apply_webhook"}
    assert jobs <= set(registry.jobs)
    [entry] = registry.schedules
    assert (entry.cron, entry.job) == ("*/30 * * * *", "shopify.scheduled_sync")
    assert [owner for owner, _ in registry.routers] == ["shopify"]
    [(owner, location)] = registry.migration_locations
    assert owner == "shopify" and location.endswith("migrations/versions")


async def test_the_migration_created_the_plugin_tables(metricx_env: Any) -> None:
    rows = await fetch_all("SELECT tablename FROM pg_tables WHERE tablename LIKE 'shopify_%' ORDER BY 1")
    assert [r.tablename for r in rows] == [
        "shopify_customers",
        "shopify_order_line_items",
        "shopify_orders",
        "shopify_products",
        "shopify_sync_state",
        "shopify_tokens",
        "shopify_webhook_deliveries",
        "shopify_webhook_inbox",
    ]


async def test_the_fanout_enqueues_each_active_shop_once_per_tick(
    new_shop: Any, shop_connection: Any, redis_client: Any
) -> None:
    _, c1 = await shop_connection(new_shop(orders=1))
    _, c2 = await shop_connection(new_shop(orders=1))
    ctx = {"redis": redis_client}
    tick = "2026-11-29T10:00:00+00:00"
    first = await scheduled_shopify_sync(ctx, tick)
    again = await scheduled_shopify_sync(ctx, tick)
    assert first["enqueued"] >= 2 and again["enqueued"] == 0
    jobs = [k.decode() for k in await redis_client.keys("arq:job:shopify:*:202611291000")]
    assert {f"arq:job:shopify:{c1}:202611291000", f"arq:job:shopify:{c2}:202611291000"} <= set(jobs)
    # the fan-out covered every shopify connection of the session: leave no job for later tests
    await redis_client.zrem(get_settings().queue_name, *[j.removeprefix("arq:job:") for j in jobs])
    await redis_client.delete(*jobs)
