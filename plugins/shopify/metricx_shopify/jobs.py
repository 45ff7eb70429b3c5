"""The plugin's arq jobs: the store sync (``process_shopify_sync_job``), its fan-out, an enqueue helper."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from redis.asyncio import Redis
from sqlalchemy import delete, select

from core import (
    EnqueueResult,
    SyncJobSpec,
    accounts_due,
    enqueue_plugin_job,
    enqueue_plugin_sync,
    enqueue_plugin_syncs,
    plugin_session,
)
from metricx_shopify import tables
from metricx_shopify.settings import get_shopify_settings
from metricx_shopify.sync import store_work
from metricx_shopify.webhooks import APPLY_JOB, inbox_job_id

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
    """Enqueue a store sync for every active Shopify connection; forget old webhook deliveries and
    enqueue again the inbox rows still pending."""
    now = datetime.now(UTC)
    accounts = await accounts_due("shopify")
    slot = _slot(tick)
    requeued = await requeue_stuck_webhooks(ctx["redis"], slot, now=now)
    results = await enqueue_plugin_syncs(STORE_SYNC, accounts, slot=slot, redis=ctx["redis"])
    stats = {
        "slot": slot,
        "enqueued": sum(1 for r in results if r["status"] == "enqueued"),
        "already_queued": sum(1 for r in results if r["status"] == "already_queued"),
        "webhooks_requeued": requeued,
    }
    log.info("store_fanout_finished", **stats)
    return stats


async def requeue_stuck_webhooks(redis: Redis, slot: str, *, now: datetime | None = None) -> int:
    """Forget old delivery ids and applied inbox rows; enqueue again every inbox row still pending
    ``WEBHOOK_REQUEUE_AFTER_S`` after its arrival (its job was lost with Redis, or ran out of tries)."""
    now = now or datetime.now(UTC)
    settings = get_shopify_settings()
    inbox = tables.webhook_inbox
    async with plugin_session() as session:
        keep = now - timedelta(days=settings.webhook_dedupe_days)
        wd = tables.webhook_deliveries
        await session.execute(delete(wd).where(wd.c.received_at < keep))
        await session.execute(delete(inbox).where(inbox.c.status == "applied", inbox.c.applied_at < keep))
        stuck = (
            await session.scalars(
                select(inbox.c.id).where(
                    inbox.c.status == "pending",
                    inbox.c.received_at <= now - timedelta(seconds=settings.webhook_requeue_after_s),
                )
            )
        ).all()
    for inbox_id in stuck:
        await enqueue_plugin_job(APPLY_JOB, inbox_id, job_id=inbox_job_id(inbox_id, slot), redis=redis)
    if stuck:
        log.info("webhooks_requeued", count=len(stuck), slot=slot)
    return len(stuck)
