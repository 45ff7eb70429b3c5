"""One connection's sync: validate, entities, metrics, status. Errors become status and retries here.

The engine streams: every provider batch is upserted in its own short
transaction, and no transaction is open while the provider talks to its API.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from arq.worker import Retry
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import metrics
from core.alerts import events as alerts
from core.config import Settings
from core.crypto import decrypt
from core.db.engine import session_scope
from core.db.models import Connection, Credential
from core.enqueue import EnqueueResult, enqueue_sync_job, release_active
from core.errors import AuthError, MetricxError, PermanentError, RateLimited, TransientError
from core.infra import InfraUnavailable, infra_error
from core.logging import redact_text
from core.plugins import Registry
from core.providers import Credentials, SyncMode
from core.state import ConnectionStatus, RunStatus, SyncStatus
from core.sync import locks, status
from core.sync.infra_retry import close_unrecorded, forget_faults, give_back_try, remember_unrecorded
from core.sync.loading import Loaded, account_ref
from core.sync.throttle import defer_sharing, scope_keys

log = structlog.get_logger(__name__)
snapshot_log = structlog.get_logger(__name__, component="SNAPSHOT_SYNC")


@dataclass
class SyncJob:
    """What one try of ``process_sync_job`` works on."""

    connection_id: uuid.UUID
    workspace_id: uuid.UUID
    mode: str  # a SyncMode (itself), or a plugin job's own label (e.g. "store"); stored in sync_runs
    job_id: str
    job_try: int
    stats: dict[str, Any] = field(default_factory=lambda: {"entities": 0, "rows": 0})
    # How a throttled try re-queues itself; default: process_sync_job in the same mode.
    requeue: Callable[[float], Awaitable[EnqueueResult]] | None = None
    # Whose "one queued or running job" slot this job holds (a plugin job has its own).
    active_for: str | None = None
    # Tries of work this job may use (None: the worker's max_tries); arq allows one more to close it.
    max_tries: int | None = None
    # This try's sync_runs row, once recorded.
    run_id: uuid.UUID | None = None
    # time.monotonic() when the try started (the duration metrics).
    started_s: float = 0.0
    # Bookkeeping writes (progress, coverage of a fetched window) that ride on the sync's next
    # transaction (a batch's, or the finish's) instead of opening one of their own.
    pending: list[Callable[[AsyncSession], Awaitable[None]]] = field(default_factory=list)
    # What the work's ``prepare`` read in the try's start transaction (e.g. coverage to plan from).
    prepared: dict[str, Any] = field(default_factory=dict)

    @property
    def active_key(self) -> str:
        """The id under which this job is the connection's active sync (released when it ends)."""
        return self.active_for or str(self.connection_id)


class SyncSkipped(Exception):
    """Raised by a sync's work when the provider skips this realtime tick (``PacesRealtime``)."""

    kind = "paced"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def backoff_s(job_try: int, settings: Settings) -> float:
    """Exponential backoff with jitter: base * 2^(try-1), capped, times 0.5-1.5."""
    delay = min(settings.retry_max_s, settings.retry_base_s * 2 ** max(0, job_try - 1))
    return float(delay * (0.5 + random.random()))


@asynccontextmanager
async def job_session(job: SyncJob) -> AsyncIterator[AsyncSession]:
    """One short transaction of the sync, carrying the bookkeeping writes queued in ``job.pending``."""
    async with session_scope() as session:
        pending, job.pending = job.pending, []
        for write in pending:
            await write(session)
        yield session


async def _select_loaded(session: AsyncSession, job: SyncJob) -> tuple[Connection, Credential | None] | None:
    # The connection and its credential in one round trip.
    row = (
        await session.execute(
            select(Connection, Credential)
            .outerjoin(Credential, Credential.connection_id == Connection.id)
            .where(Connection.id == job.connection_id, Connection.workspace_id == job.workspace_id)
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def _load(job: SyncJob, registry: Registry) -> Loaded | None:
    async with session_scope() as session:
        row = await _select_loaded(session, job)
    return None if row is None else _loaded(*row, registry)


def _loaded(conn: Connection, cred: Credential | None, registry: Registry) -> Loaded:
    credentials = Credentials()
    if cred is not None:
        credentials = Credentials(
            access_token=decrypt(cred.access_token_enc),
            refresh_token=decrypt(cred.refresh_token_enc),
            expires_at=cred.expires_at,
            scopes=tuple((cred.scopes or "").split()),
        )
    return Loaded(conn, credentials, registry.provider(conn.provider))


def _requeue_sync(ctx: dict[str, Any], job: SyncJob) -> Callable[[float], Awaitable[EnqueueResult]]:
    async def requeue(defer_s: float) -> EnqueueResult:
        return await enqueue_sync_job(
            str(job.connection_id),
            str(job.workspace_id),
            mode=SyncMode(job.mode),
            defer_s=defer_s,
            redis=ctx["redis"],
        )

    return requeue


Work = Callable[[SyncJob, dict[str, Any], "Loaded", uuid.UUID], Awaitable[None]]


async def run_sync(ctx: dict[str, Any], job: SyncJob, work: Work) -> dict[str, Any]:
    """Run one try of a sync and map its outcome to status, ``sync_runs`` and arq retries.

    ``work`` does the fetching (``core.sync.fetch.default_work`` for ad syncs: token
    check, entities, metrics for the mode's windows; a plugin job's own work through
    :mod:`core.sync.context`), with the same lock, status tracking, ``sync_runs``
    rows, retries and deferrals for all of them.

    PostgreSQL or Redis failing anywhere (loading the connection, recording the start,
    the outcome or the failure itself) ends in ``Retry``, never in a dropped job.
    """
    try:
        result = await _run_sync(ctx, job, work)
    except Retry:
        raise
    except Exception as exc:
        fault = infra_error(exc)
        if fault is None:
            raise
        if job.run_id is not None:  # its sync_runs row says `running`: the next try closes it
            await remember_unrecorded(ctx["redis"], job.job_id, job.run_id)
        raise await _infra_retry(ctx, job, fault) from exc
    if job.job_try > 1:  # the job ended (done or failed for good): its fault count starts over
        await forget_faults(ctx["redis"], job.job_id)
    return result


async def _infra_retry(ctx: dict[str, Any], job: SyncJob, fault: InfraUnavailable) -> Retry:
    """The ``Retry`` for a try PostgreSQL or Redis interrupted (the last try is given back)."""
    settings: Settings = ctx["settings"]
    faults = await give_back_try(ctx["redis"], settings, job.job_id, job.job_try, tries_of(job, settings))
    if faults is None:
        snapshot_log.error("sync_infra_retries_exhausted", error=fault.message, try_number=job.job_try)
        return Retry(defer=settings.retry_max_s)  # arq's own try count decides from here
    delay = backoff_s(faults, settings)
    snapshot_log.warning(
        "sync_infra_retry",
        error=fault.message,
        try_number=job.job_try,
        faults=faults,
        defer_s=round(delay, 2),
    )
    return Retry(defer=delay)


def _skip(conn: Connection | None) -> str | None:
    """Why this job does nothing (the connection is gone from the workspace, or not active)."""
    if conn is None:
        return "connection not found in workspace"
    if conn.status != ConnectionStatus.active:
        return f"connection is {conn.status}"
    return None


async def _skipped(redis: Redis, job: SyncJob, reason: str) -> dict[str, Any]:
    await release_active(redis, job.active_key, job.job_id)
    if reason.startswith("connection not found"):
        log.warning("sync_skipped", reason=reason)
        return {"status": "skipped", "reason": "connection not found"}
    log.info("sync_skipped", reason=reason)
    return {"status": "skipped", "reason": reason}


async def _run_sync(ctx: dict[str, Any], job: SyncJob, work: Work) -> dict[str, Any]:
    redis: Redis = ctx["redis"]
    structlog.contextvars.bind_contextvars(
        job_id=job.job_id, connection_id=str(job.connection_id), workspace_id=str(job.workspace_id)
    )
    exhausted = job.job_try > tries_of(job, ctx["settings"])
    lock, holder = (None, None) if exhausted else await locks.acquire(redis, job, ctx["settings"])
    if lock is None:
        # Rare paths (a job past its tries, a busy connection): load first, as a skip comes first.
        loaded = await _load(job, ctx["registry"])
        reason = _skip(loaded.connection if loaded else None)
        if reason is not None:
            return await _skipped(redis, job, reason)
        assert loaded is not None
        if exhausted:
            return await _close_exhausted(ctx, job, loaded.provider.name)
        # The holder may have been finishing (its status written, its lock not yet given back).
        lock, holder = await locks.acquire(redis, job, ctx["settings"])
        if lock is None:
            # Another sync of this connection is running (e.g. the store sync): wait, using no try.
            return await locks.wait_turn(
                ctx, job, holder or "another sync", job.requeue or _requeue_sync(ctx, job)
            )
    try:
        started = await _start(ctx, job, work)
        if isinstance(started, str):
            return await _skipped(redis, job, started)
        return await _attempt(ctx, job, started, work)
    finally:
        await locks.release(lock)


async def _start(ctx: dict[str, Any], job: SyncJob, work: Work) -> Loaded | str:
    """The try's start in one transaction: load the connection, record the try (``syncing``, a
    running ``sync_runs`` row), and what the work prepares; a skip reason if there is no try."""
    prepare = getattr(work, "prepare", None)
    async with session_scope() as session:
        row = await _select_loaded(session, job)
        reason = _skip(row[0] if row else None)
        if reason is not None:
            return reason
        assert row is not None
        run_id = await status.mark_started(
            session, job.connection_id, job.workspace_id, job.job_id, job.job_try, job.mode
        )
        if job.job_try > 1:
            await close_unrecorded(ctx["redis"], session, job.job_id)
        if prepare is not None:
            await prepare(session, job, row[0])
    job.run_id = run_id  # once committed: a try whose start was lost has no row to close
    return _loaded(*row, ctx["registry"])


def tries_of(job: SyncJob, settings: Settings) -> int:
    """The tries of work ``job`` may use."""
    return job.max_tries or settings.max_tries


async def _close_exhausted(ctx: dict[str, Any], job: SyncJob, provider: str) -> dict[str, Any]:
    """Every try of the job was stopped before it could record an outcome: close it as an error."""
    tries = tries_of(job, ctx["settings"])
    message = (
        f"the sync was stopped on each of its {tries} tries before finishing (its worker was killed "
        "or lost, or it ran past the job timeout); the connection's next sync runs it again"
    )
    async with session_scope() as session:
        abandoned = await status.close_abandoned(session, job.job_id)
        await status.mark_failed(
            session, job.connection_id, sync_status=SyncStatus.error, kind="interrupted", message=message
        )
    await release_active(ctx["redis"], job.active_key, job.job_id)
    snapshot_log.error("sync_abandoned", tries=tries, runs_abandoned=abandoned)
    ctx["registry"].notify(
        "on_sync_failed",
        connection_id=str(job.connection_id),
        workspace_id=str(job.workspace_id),
        provider=provider,
        mode=job.mode,
        job_id=job.job_id,
        error_kind="interrupted",
        message=message,
    )
    return {"status": RunStatus.failed.value, "error_kind": "interrupted", "error": message}


async def _attempt(ctx: dict[str, Any], job: SyncJob, loaded: Loaded, work: Work) -> dict[str, Any]:
    registry: Registry = ctx["registry"]
    provider = loaded.provider.name
    run_id = job.run_id
    assert run_id is not None
    event = {
        "connection_id": str(job.connection_id),
        "workspace_id": str(job.workspace_id),
        "provider": provider,
        "mode": job.mode,
        "job_id": job.job_id,
    }
    registry.notify("on_sync_started", **event)
    job.started_s = time.monotonic()
    metrics.jobs_started.labels(job.mode, provider).inc()
    snapshot_log.info("sync_started", provider=provider, mode=job.mode, try_number=job.job_try)
    started = datetime.now(UTC)
    try:
        await work(job, ctx, loaded, run_id)
    except SyncSkipped as skip:
        # The provider paced this realtime tick out (e.g. a daily quota running low): no API call was
        # made; the connection stays idle and shows why until its next sync.
        await _finish_failed(
            ctx,
            job,
            run_id,
            SyncSkipped.kind,
            skip.reason,
            sync_status=SyncStatus.idle,
            run_status=RunStatus.deferred,
        )
        metrics.record_job_end(job.mode, provider, RunStatus.deferred, job.started_s, job.stats)
        snapshot_log.info("sync_skipped", reason=skip.reason)
        return {"status": RunStatus.deferred.value, "skipped": skip.reason}
    except asyncio.CancelledError:
        _count_failure(job, provider, "timeout")
        await asyncio.shield(
            _finish_failed(
                ctx, job, run_id, "timeout", "the sync ran past the job timeout", sync_status=SyncStatus.error
            )
        )
        raise
    except Exception as exc:
        return await _handle_error(ctx, job, run_id, exc, event, loaded.credentials, loaded)
    async with job_session(job) as session:
        recovered = await status.finish_succeeded(
            session,
            job.connection_id,
            run_id,
            backfill=job.mode == SyncMode.backfill,
            rows_written=job.stats["rows"],
            entities_written=job.stats["entities"],
            api_calls=job.stats.get("api_calls", 0),
            seconds_throttled=job.stats.get("seconds_throttled", 0),
        )
        # An error or reconnect alert was announced for this connection: announce its recovery
        # (recorded in this transaction, its deliveries enqueued after it).
        deliveries = await alerts.recovered(session, loaded.connection) if recovered else []
    await release_active(ctx["redis"], job.active_key, job.job_id)
    if deliveries:
        await alerts.enqueue_deliveries(ctx["redis"], deliveries, alerts.RECOVERED)
    metrics.record_job_end(job.mode, provider, RunStatus.complete, job.started_s, job.stats)
    # Records and enqueues only. The token is checked after the sync, which may have refreshed it.
    await alerts.token_checked(
        ctx["redis"],
        loaded.connection,
        loaded.credentials.expires_at,
        ctx["settings"].alert_token_expiry_days,
    )
    seconds = round((datetime.now(UTC) - started).total_seconds(), 3)
    registry.notify("on_sync_finished", **event, stats=dict(job.stats))
    snapshot_log.info(
        "sync_finished", rows=job.stats["rows"], entities=job.stats["entities"], seconds=seconds
    )
    return {"status": RunStatus.complete.value, "mode": str(job.mode), **job.stats}


async def _finish_failed(
    ctx: dict[str, Any],
    job: SyncJob,
    run_id: uuid.UUID,
    kind: str,
    message: str,
    *,
    sync_status: SyncStatus,
    rate_limited_until: datetime | None = None,
    run_status: RunStatus = RunStatus.failed,
) -> None:
    async with job_session(job) as session:
        await status.mark_failed(
            session,
            job.connection_id,
            sync_status=sync_status,
            kind=kind,
            message=message,
            rate_limited_until=rate_limited_until,
            keep_job=run_status is RunStatus.retrying,
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
    if run_status is not RunStatus.retrying:
        await release_active(ctx["redis"], job.active_key, job.job_id)


def _count_failure(job: SyncJob, provider: str, kind: str) -> None:
    metrics.jobs_failed.labels(job.mode, provider, kind).inc()
    metrics.record_job_end(job.mode, provider, RunStatus.failed, job.started_s, job.stats)


def scrub(message: str, credentials: Credentials) -> str:
    """``message`` without the connection's tokens or token-shaped secrets (it is stored and shown)."""
    for secret in (credentials.access_token, credentials.refresh_token):
        if secret and len(secret) >= 4:
            message = message.replace(secret, "[REDACTED]")
    return redact_text(message)


async def _handle_error(
    ctx: dict[str, Any],
    job: SyncJob,
    run_id: uuid.UUID,
    exc: Exception,
    event: dict[str, Any],
    credentials: Credentials,
    loaded: Loaded,
) -> dict[str, Any]:
    settings: Settings = ctx["settings"]
    registry: Registry = ctx["registry"]
    fault = exc if isinstance(exc, InfraUnavailable) else None
    if fault is None and not isinstance(exc, MetricxError):
        fault = infra_error(exc)
    if fault is not None:
        # PostgreSQL or Redis failed under the sync: not the sync's fault. Retried (on the last
        # try too); if recording this fails as well, run_sync retries without a record.
        await _finish_failed(
            ctx,
            job,
            run_id,
            fault.kind,
            fault.message,
            sync_status=SyncStatus.queued,
            run_status=RunStatus.retrying,
        )
        raise await _infra_retry(ctx, job, fault) from exc
    if isinstance(exc, MetricxError):
        kind, message = exc.kind, exc.message
    else:
        # A provider bug or an unexpected payload: permanent, with the exception's own words.
        kind, message = PermanentError.kind, f"{type(exc).__name__}: {exc}"
    message = scrub(message, credentials)
    fail = {**event, "error_kind": kind, "message": status.clip(message)}
    if isinstance(exc, TransientError) and job.job_try < tries_of(job, settings):
        delay = backoff_s(job.job_try, settings)
        await _finish_failed(
            ctx,
            job,
            run_id,
            kind,
            f"{message} (retry {job.job_try + 1} of {tries_of(job, settings)} in {delay:.0f}s)",
            sync_status=SyncStatus.queued,
            run_status=RunStatus.retrying,
        )
        metrics.record_job_end(job.mode, event["provider"], RunStatus.retrying, job.started_s, job.stats)
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
            sync_status=SyncStatus.rate_limited,
            rate_limited_until=until,
            run_status=RunStatus.deferred,
        )
        # Every connection sharing the throttled scope waits too.
        conn = loaded.connection
        scopes = scope_keys(
            loaded.provider, account_ref(conn), credentials, trusted=conn.throttle_scopes, settings=settings
        )
        await defer_sharing(ctx["redis"], scopes, exc, until=until, connection_id=job.connection_id)
        requeued = None
        if exc.retry_after_s <= settings.rate_limit_requeue_max_s:
            requeued = await (job.requeue or _requeue_sync(ctx, job))(exc.retry_after_s + 1)
        snapshot_log.warning(
            "sync_rate_limited",
            retry_after_s=exc.retry_after_s,
            requeued=requeued["job_id"] if requeued else None,
        )
        metrics.record_job_end(job.mode, event["provider"], RunStatus.deferred, job.started_s, job.stats)
        registry.notify("on_sync_failed", **fail)
        return {
            "status": RunStatus.deferred.value,
            "rate_limited_until": until.isoformat(),
            "next_job_id": requeued["job_id"] if requeued else None,
        }
    sync_status = SyncStatus.reconnect_required if isinstance(exc, AuthError) else SyncStatus.error
    await _finish_failed(ctx, job, run_id, kind, message, sync_status=sync_status)
    _count_failure(job, event["provider"], kind)
    await alerts.sync_failed(ctx["redis"], loaded.connection, sync_status, kind, status.clip(message))
    if isinstance(exc, MetricxError):
        snapshot_log.error("sync_failed", error_kind=kind, error=message)
    else:
        snapshot_log.exception("sync_failed", error_kind=kind, error=message)
    registry.notify("on_sync_failed", **fail)
    return {"status": RunStatus.failed.value, "error_kind": kind, "error": status.clip(message)}
