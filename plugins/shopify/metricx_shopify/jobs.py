"""The plugin's arq jobs: the store sync (``process_shopify_sync_job``), its fan-out, an enqueue helper."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from redis.asyncio import Redis
from sqlalchemy import delete

from core import (
    EnqueueResult,
    SyncJobSpec,
    accounts_due,
    enqueue_plugin_sync,
    enqueue_plugin_syncs,
    plugin_session,
)
from metricx_shopify import tables
from metricx_shopify.settings import get_shopify_settings
from metricx_shopify.sync import store_work

log = structlog.get_logger(__name__, component="SHOPIFY_SYNC")

SYNC_JOB = "process_shopify_sync_job"
FANOUT_JOB = "shopify.scheduled_sync"

#: The store sync, run by the core's sync engine: job ids ``shopify:{connection}:{slot}``,
#: ``sync_runs.mode`` "store", and ``full`` (ignore the cursors) as its one option.
STORE_SYNC = SyncJobSpec(
    name=SYNC_JOB,
    provider="shopify",
    label="store",
    work=store_work,
    job_id_prefix="shopify",
    arguments=("full",),
)


async def enqueue_store_sync(
    connection_id: str,
    workspace_id: str,
    *,
    full: bool = False,
    defer_s: float = 0.0,
    redis: Redis | None = None,
) -> EnqueueResult:
    """Enqueue ``process_shopify_sync_job`` for one connection, or return the one already queued."""
    result = await enqueue_plugin_sync(
        STORE_SYNC, connection_id, workspace_id, options={"full": full}, defer_s=defer_s, redis=redis
    )
    log.info("store_sync_enqueued", connection_id=connection_id, full=full, **result)
    return result


def _slot(tick: str | None) -> str:
    at = datetime.fromisoformat(tick) if tick else datetime.now(UTC)
    return at.astimezone(UTC).strftime("%Y%m%d%H%M")


async def scheduled_shopify_sync(ctx: dict[str, Any], tick: str | None = None) -> dict[str, Any]:
    """Enqueue a store sync for every active Shopify connection; forget old webhook deliveries."""
    now = datetime.now(UTC)
    accounts = await accounts_due("shopify")
    async with plugin_session() as session:
        keep_days = get_shopify_settings().webhook_dedupe_days
        wd = tables.webhook_deliveries
        await session.execute(delete(wd).where(wd.c.received_at < now - timedelta(days=keep_days)))
    slot = _slot(tick)
    results = await enqueue_plugin_syncs(STORE_SYNC, accounts, slot=slot, redis=ctx["redis"])
    stats = {
        "slot": slot,
        "enqueued": sum(1 for r in results if r["status"] == "enqueued"),
        "already_queued": sum(1 for r in results if r["status"] == "already_queued"),
    }
    log.info("store_fanout_finished", **stats)
    return stats
