"""The plugin's arq jobs: ``process_shopify_sync_job`` and its hourly fan-out, plus an enqueue helper."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from redis.asyncio import Redis
from sqlalchemy import delete, or_, select

from core import ConfigError
from core.db.engine import session_scope
from core.db.models import Connection
from core.enqueue import EnqueueResult, JobRequest, enqueue_many, get_arq_pool
from core.jobs import parse_uuid
from core.sync.engine import SyncJob, run_sync
from metricx_shopify import tables
from metricx_shopify.settings import get_shopify_settings
from metricx_shopify.sync import store_work

log = structlog.get_logger(__name__, component="SHOPIFY_SYNC")

SYNC_JOB = "process_shopify_sync_job"
FANOUT_JOB = "shopify.scheduled_sync"


def store_request(
    connection_id: str,
    workspace_id: str,
    *,
    full: bool = False,
    slot: str | None = None,
    defer_s: float = 0.0,
) -> JobRequest:
    """The job request of one store sync: ``shopify:{connection}:{slot}``, one queued per connection."""
    return JobRequest(
        function=SYNC_JOB,
        job_id=f"shopify:{connection_id}:{slot or int(time.time() * 1000)}",
        args=(connection_id, workspace_id, full),
        defer_s=defer_s,
        # Its own active-job key: a store sync does not hide (or get hidden by) an ad-metrics sync.
        connection_id=f"{connection_id}:store",
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
    conn = redis or await get_arq_pool()
    [result] = await enqueue_many(
        conn, [store_request(connection_id, workspace_id, full=full, defer_s=defer_s)]
    )
    log.info("store_sync_enqueued", connection_id=connection_id, full=full, **result)
    return result


async def process_shopify_sync_job(
    ctx: dict[str, Any], connection_id: str, workspace_id: str, full: bool = False
) -> dict[str, Any]:
    """Sync one shop's products, customers and orders into the plugin's tables (``full``: ignore cursors)."""
    try:
        job = SyncJob(
            connection_id=parse_uuid(connection_id, "connection_id"),
            workspace_id=parse_uuid(workspace_id, "workspace_id"),
            mode="store",
            job_id=ctx["job_id"],
            job_try=ctx.get("job_try", 1),
        )
    except ConfigError as exc:
        return {"status": "failed", "error_kind": exc.kind, "error": exc.message}

    async def requeue(defer_s: float) -> EnqueueResult:
        [result] = await enqueue_many(
            ctx["redis"], [store_request(connection_id, workspace_id, full=bool(full), defer_s=defer_s)]
        )
        return result

    job.requeue = requeue
    return await run_sync(ctx, job, work=functools.partial(store_work, full=bool(full)))


def _slot(tick: str | None) -> str:
    at = datetime.fromisoformat(tick) if tick else datetime.now(UTC)
    return at.astimezone(UTC).strftime("%Y%m%d%H%M")


async def scheduled_shopify_sync(ctx: dict[str, Any], tick: str | None = None) -> dict[str, Any]:
    """Enqueue a store sync for every active Shopify connection; forget old webhook deliveries."""
    now = datetime.now(UTC)
    async with session_scope() as session:
        rows = (
            await session.execute(
                select(Connection.id, Connection.workspace_id).where(
                    Connection.provider == "shopify",
                    Connection.status == "active",
                    Connection.sync_status != "reconnect_required",
                    or_(Connection.rate_limited_until.is_(None), Connection.rate_limited_until <= now),
                )
            )
        ).all()
        keep_days = get_shopify_settings().webhook_dedupe_days
        wd = tables.webhook_deliveries
        await session.execute(delete(wd).where(wd.c.received_at < now - timedelta(days=keep_days)))
    slot = _slot(tick)
    results = await enqueue_many(ctx["redis"], [store_request(str(c), str(w), slot=slot) for c, w in rows])
    stats = {
        "slot": slot,
        "enqueued": sum(1 for r in results if r["status"] == "enqueued"),
        "already_queued": sum(1 for r in results if r["status"] == "already_queued"),
    }
    log.info("store_fanout_finished", **stats)
    return stats
