"""One connection's sync: validate, entities, metrics, status. Errors become status and retries here.

The engine streams: every provider batch is upserted in its own short
transaction, and no transaction is open while the provider talks to its API.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from arq.worker import Retry
from redis.asyncio import Redis
from sqlalchemy import select, update

from core.config import Settings
from core.crypto import decrypt, encrypt
from core.db.engine import session_scope
from core.db.models import Connection, Credential
from core.enqueue import enqueue_sync_job, release_active
from core.errors import AuthError, MetricxError, PermanentError, RateLimited, TransientError
from core.plugins import Registry
from core.providers import AccountRef, Credentials, Provider, ProviderContext, SyncMode, SyncWindow
from core.ratelimit import AccountLimiter
from core.sync import status
from core.sync.upserts import upsert_entities, upsert_snapshots
from core.sync.windows import total_backfill_slices, windows_for

log = structlog.get_logger(__name__)
entity_log = log.bind(component="ENTITY_SYNC")
snapshot_log = log.bind(component="SNAPSHOT_SYNC")


@dataclass
class SyncJob:
    """What one try of ``process_sync_job`` works on."""

    connection_id: uuid.UUID
    workspace_id: uuid.UUID
    mode: SyncMode
    job_id: str
    job_try: int
    stats: dict[str, Any] = field(default_factory=lambda: {"entities": 0, "rows": 0})


@dataclass
class Loaded:
    connection: Connection
    credentials: Credentials
    provider: Provider


def backoff_s(job_try: int, settings: Settings) -> float:
    """Exponential backoff with jitter: base * 2^(try-1), capped, times 0.5-1.5."""
    delay = min(settings.retry_max_s, settings.retry_base_s * 2 ** max(0, job_try - 1))
    return float(delay * (0.5 + random.random()))


async def _load(job: SyncJob, registry: Registry) -> Loaded | None:
    async with session_scope() as session:
        conn = await session.scalar(
            select(Connection).where(
                Connection.id == job.connection_id, Connection.workspace_id == job.workspace_id
            )
        )
        if conn is None:
            return None
        cred = await session.scalar(select(Credential).where(Credential.connection_id == conn.id))
    credentials = Credentials()
    if cred is not None:
        credentials = Credentials(
            access_token=decrypt(cred.access_token_enc),
            refresh_token=decrypt(cred.refresh_token_enc),
            expires_at=cred.expires_at,
            scopes=tuple((cred.scopes or "").split()),
        )
    return Loaded(conn, credentials, registry.provider(conn.provider))


def _account(conn: Connection) -> AccountRef:
    return AccountRef(
        connection_id=str(conn.id),
        workspace_id=str(conn.workspace_id),
        external_account_id=conn.external_account_id,
        timezone=conn.timezone or "UTC",
        currency=conn.currency,
        config=dict(conn.config or {}),
    )


async def _store_credentials(connection_id: uuid.UUID, creds: Credentials) -> None:
    async with session_scope() as session:
        await session.execute(
            update(Credential)
            .where(Credential.connection_id == connection_id)
            .values(
                access_token_enc=encrypt(creds.access_token),
                refresh_token_enc=encrypt(creds.refresh_token),
                expires_at=creds.expires_at,
                scopes=" ".join(creds.scopes) or None,
                updated_at=status.utcnow(),
            )
        )


async def _refresh_account(provider: Provider, pctx: ProviderContext, loaded: Loaded) -> AccountRef:
    conn = loaded.connection
    info = await provider.fetch_account(pctx, _account(conn), loaded.credentials)
    changes = {"timezone": info.timezone, "currency": info.currency}
    if info.name and not conn.name:
        changes["name"] = info.name
    if any(getattr(conn, k) != v for k, v in changes.items()):
        async with session_scope() as session:
            await session.execute(update(Connection).where(Connection.id == conn.id).values(**changes))
        for key, value in changes.items():
            setattr(conn, key, value)
    return _account(conn)


async def _sync_entities(job: SyncJob, provider: Provider, pctx: ProviderContext, loaded: Loaded) -> None:
    account = _account(loaded.connection)
    async for batch in provider.sync_entities(pctx, account, loaded.credentials):
        async with session_scope() as session:
            job.stats["entities"] += await upsert_entities(
                session, job.workspace_id, job.connection_id, batch
            )
    entity_log.info("entities_synced", entities=job.stats["entities"])


async def _fetch_window(
    job: SyncJob, provider: Provider, pctx: ProviderContext, loaded: Loaded, window: SyncWindow, now: datetime
) -> None:
    conn = loaded.connection
    async for batch in provider.fetch_metrics(pctx, _account(conn), loaded.credentials, window):
        async with session_scope() as session:
            job.stats["rows"] += await upsert_snapshots(
                session,
                job.workspace_id,
                job.connection_id,
                batch,
                timezone=conn.timezone or "UTC",
                currency=conn.currency,
                now=now,
            )


async def _sync_metrics(
    job: SyncJob,
    provider: Provider,
    pctx: ProviderContext,
    loaded: Loaded,
    run_id: uuid.UUID,
    settings: Settings,
) -> None:
    conn = loaded.connection
    now = datetime.now(UTC)
    caps = provider.capabilities
    windows = windows_for(
        job.mode,
        caps,
        conn.timezone or "UTC",
        now,
        last_completed_at=conn.last_sync_completed_at,
        attribution_days=settings.attribution_days,
        backfill_days=settings.backfill_days,
        slice_days=settings.backfill_slice_days,
        resume_before=conn.backfill_cursor if job.mode is SyncMode.backfill else None,
    )
    total = len(windows)
    if job.mode is SyncMode.backfill:
        total = total_backfill_slices(
            settings.backfill_days or caps.backfill_days,
            settings.backfill_slice_days or caps.backfill_slice_days,
        )
    done = total - len(windows)
    async with session_scope() as session:
        await status.update_run(
            session,
            run_id,
            slices_total=total,
            slices_done=done,
            window_start=windows[-1].start if windows else None,
            window_end=windows[0].end if windows else None,
        )
    for window in windows:
        await _fetch_window(job, provider, pctx, loaded, window, now)
        done += 1
        async with session_scope() as session:
            await status.update_run(session, run_id, slices_done=done, rows_written=job.stats["rows"])
            if job.mode is SyncMode.backfill:
                await session.execute(
                    update(Connection).where(Connection.id == conn.id).values(backfill_cursor=window.start)
                )
        snapshot_log.info(
            "window_synced", window=str(window), rows=job.stats["rows"], slices=f"{done}/{total}"
        )


async def _run(job: SyncJob, ctx: dict[str, Any], loaded: Loaded, run_id: uuid.UUID) -> None:
    settings: Settings = ctx["settings"]
    provider = loaded.provider
    limiter = AccountLimiter(ctx["redis"], provider.name, loaded.connection.external_account_id)
    pctx = ProviderContext(http=ctx["http"], limiter=limiter)
    try:
        provider.check_credentials(loaded.credentials)
        refreshed = await provider.validate_token(pctx, _account(loaded.connection), loaded.credentials)
        if refreshed is not None:
            await _store_credentials(job.connection_id, refreshed)
            loaded.credentials = refreshed
        await _refresh_account(provider, pctx, loaded)
        await _sync_entities(job, provider, pctx, loaded)
        await _sync_metrics(job, provider, pctx, loaded, run_id, settings)
    finally:
        job.stats.update(limiter.stats())


async def run_sync(ctx: dict[str, Any], job: SyncJob) -> dict[str, Any]:
    """Run one try of a sync and map its outcome to status, ``sync_runs`` and arq retries."""
    registry: Registry = ctx["registry"]
    redis: Redis = ctx["redis"]
    structlog.contextvars.bind_contextvars(
        job_id=job.job_id, connection_id=str(job.connection_id), workspace_id=str(job.workspace_id)
    )
    loaded = await _load(job, registry)
    if loaded is None:
        await release_active(redis, str(job.connection_id), job.job_id)
        log.warning("sync_skipped", reason="connection not found in workspace")
        return {"status": "skipped", "reason": "connection not found"}
    if loaded.connection.status != "active":
        await release_active(redis, str(job.connection_id), job.job_id)
        log.info("sync_skipped", reason=f"connection is {loaded.connection.status}")
        return {"status": "skipped", "reason": f"connection is {loaded.connection.status}"}
    lock = redis.lock(
        f"metricx:lock:connection:{job.connection_id}", timeout=ctx["settings"].job_timeout_s + 5
    )
    if not await lock.acquire(blocking=False):
        # Another sync of this connection is running (e.g. a different mode): try again shortly.
        raise Retry(defer=backoff_s(1, ctx["settings"]))
    try:
        return await _attempt(ctx, job, loaded)
    finally:
        try:
            await lock.release()
        except Exception as exc:  # the lock expired: nothing left to release
            log.debug("lock_release_skipped", error=str(exc))


async def _attempt(ctx: dict[str, Any], job: SyncJob, loaded: Loaded) -> dict[str, Any]:
    registry: Registry = ctx["registry"]
    provider = loaded.provider.name
    async with session_scope() as session:
        run_id = await status.mark_started(
            session, job.connection_id, job.workspace_id, job.job_id, job.job_try, job.mode.value
        )
    event = {
        "connection_id": str(job.connection_id),
        "workspace_id": str(job.workspace_id),
        "provider": provider,
        "mode": job.mode.value,
        "job_id": job.job_id,
    }
    registry.notify("on_sync_started", **event)
    snapshot_log.info("sync_started", provider=provider, mode=job.mode.value, try_number=job.job_try)
    started = datetime.now(UTC)
    try:
        await _run(job, ctx, loaded, run_id)
    except asyncio.CancelledError:
        await asyncio.shield(
            _finish_failed(
                ctx, job, run_id, "timeout", "the sync ran past the job timeout", sync_status="error"
            )
        )
        raise
    except Exception as exc:
        return await _handle_error(ctx, job, run_id, exc, event)
    async with session_scope() as session:
        await status.mark_succeeded(session, job.connection_id, backfill=job.mode is SyncMode.backfill)
        await status.update_run(
            session,
            run_id,
            status="complete",
            finished_at=status.utcnow(),
            rows_written=job.stats["rows"],
            entities_written=job.stats["entities"],
            api_calls=job.stats.get("api_calls", 0),
            seconds_throttled=job.stats.get("seconds_throttled", 0),
        )
    await release_active(ctx["redis"], str(job.connection_id), job.job_id)
    seconds = round((datetime.now(UTC) - started).total_seconds(), 3)
    registry.notify("on_sync_finished", **event, stats=dict(job.stats))
    snapshot_log.info(
        "sync_finished", rows=job.stats["rows"], entities=job.stats["entities"], seconds=seconds
    )
    return {"status": "complete", "mode": job.mode.value, **job.stats}


async def _finish_failed(
    ctx: dict[str, Any],
    job: SyncJob,
    run_id: uuid.UUID,
    kind: str,
    message: str,
    *,
    sync_status: str,
    rate_limited_until: datetime | None = None,
    run_status: str = "failed",
) -> None:
    async with session_scope() as session:
        await status.mark_failed(
            session,
            job.connection_id,
            sync_status=sync_status,
            kind=kind,
            message=message,
            rate_limited_until=rate_limited_until,
            keep_job=run_status == "retrying",
        )
        await status.update_run(
            session,
            run_id,
            status=run_status,
            finished_at=status.utcnow(),
            error_kind=kind,
            error_message=status.clip(message),
            rows_written=job.stats["rows"],
            entities_written=job.stats["entities"],
            api_calls=job.stats.get("api_calls", 0),
            seconds_throttled=job.stats.get("seconds_throttled", 0),
        )
    if run_status != "retrying":
        await release_active(ctx["redis"], str(job.connection_id), job.job_id)


async def _handle_error(
    ctx: dict[str, Any], job: SyncJob, run_id: uuid.UUID, exc: Exception, event: dict[str, Any]
) -> dict[str, Any]:
    settings: Settings = ctx["settings"]
    registry: Registry = ctx["registry"]
    if isinstance(exc, MetricxError):
        kind, message = exc.kind, exc.message
    else:
        # A provider bug or an unexpected payload: permanent, with the exception's own words.
        kind, message = PermanentError.kind, f"{type(exc).__name__}: {exc}"
    fail = {**event, "error_kind": kind, "message": status.clip(message)}
    if isinstance(exc, TransientError) and job.job_try < settings.max_tries:
        delay = backoff_s(job.job_try, settings)
        await _finish_failed(
            ctx,
            job,
            run_id,
            kind,
            f"{message} (retry {job.job_try + 1} of {settings.max_tries} in {delay:.0f}s)",
            sync_status="queued",
            run_status="retrying",
        )
        snapshot_log.warning("sync_retrying", error=message, try_number=job.job_try, defer_s=round(delay, 2))
        raise Retry(defer=delay) from exc
    if isinstance(exc, RateLimited):
        until = datetime.now(UTC) + timedelta(seconds=exc.retry_after_s)
        await _finish_failed(
            ctx,
            job,
            run_id,
            kind,
            message,
            sync_status="rate_limited",
            rate_limited_until=until,
            run_status="deferred",
        )
        requeued = None
        if exc.retry_after_s <= settings.rate_limit_requeue_max_s:
            requeued = await enqueue_sync_job(
                str(job.connection_id),
                str(job.workspace_id),
                mode=job.mode,
                defer_s=exc.retry_after_s + 1,
                redis=ctx["redis"],
            )
        snapshot_log.warning(
            "sync_rate_limited",
            retry_after_s=exc.retry_after_s,
            requeued=requeued["job_id"] if requeued else None,
        )
        registry.notify("on_sync_failed", **fail)
        return {
            "status": "deferred",
            "rate_limited_until": until.isoformat(),
            "next_job_id": requeued["job_id"] if requeued else None,
        }
    sync_status = "reconnect_required" if isinstance(exc, AuthError) else "error"
    await _finish_failed(ctx, job, run_id, kind, message, sync_status=sync_status)
    if isinstance(exc, MetricxError):
        snapshot_log.error("sync_failed", error_kind=kind, error=message)
    else:
        snapshot_log.exception("sync_failed", error_kind=kind, error=message)
    registry.notify("on_sync_failed", **fail)
    return {"status": "failed", "error_kind": kind, "error": status.clip(message)}
