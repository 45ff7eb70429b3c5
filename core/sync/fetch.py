"""What a provider sync fetches: token check, account facts, entities, metrics per window.

Each provider batch is upserted in its own short transaction; no transaction
is open while the provider talks to its API.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings
from core.coverage import closed_days, horizon, record_fetched, record_unavailable
from core.db.engine import session_scope
from core.db.models import Connection
from core.providers import Capabilities, PacesRealtime, Provider, ProviderContext, SyncMode, SyncWindow
from core.sync import status
from core.sync.engine import SyncJob, SyncSkipped, job_session
from core.sync.loading import Loaded, account_ref, provider_context, refresh_account_facts, store_credentials
from core.sync.throttle import record_verified
from core.sync.upserts import upsert_entities, upsert_snapshots
from core.sync.windows import (
    attribution_window,
    deep_tier_window,
    is_deep_tier_day,
    local_today,
    realtime_window,
    slices_of_days,
    total_backfill_slices,
)

entity_log = structlog.get_logger(__name__, component="ENTITY_SYNC")
snapshot_log = structlog.get_logger(__name__, component="SNAPSHOT_SYNC")


async def _refresh_account(provider: Provider, pctx: ProviderContext, loaded: Loaded) -> None:
    info = await provider.fetch_account(pctx, account_ref(loaded.connection), loaded.credentials)
    await record_verified(pctx.limiter, loaded.connection)  # the credential reached the account
    await refresh_account_facts(loaded, name=info.name, timezone=info.timezone, currency=info.currency)


async def _sync_entities(job: SyncJob, provider: Provider, pctx: ProviderContext, loaded: Loaded) -> None:
    account = account_ref(loaded.connection)
    async for batch in provider.sync_entities(pctx, account, loaded.credentials):
        async with job_session(job) as session:
            job.stats["entities"] += await upsert_entities(
                session, job.workspace_id, job.connection_id, batch
            )
    entity_log.info("entities_synced", entities=job.stats["entities"])


async def _fetch_window(
    job: SyncJob, provider: Provider, pctx: ProviderContext, loaded: Loaded, window: SyncWindow, now: datetime
) -> None:
    conn = loaded.connection
    async for batch in provider.fetch_metrics(pctx, account_ref(conn), loaded.credentials, window):
        async with job_session(job) as session:
            job.stats["rows"] += await upsert_snapshots(
                session,
                job.workspace_id,
                job.connection_id,
                batch,
                timezone=conn.timezone or "UTC",
                currency=conn.currency,
                now=now,
            )
        del batch  # released before the provider reads the next one: one batch in memory


async def plan_windows(
    job: SyncJob, caps: Capabilities, conn: Connection, settings: Settings, now: datetime
) -> list[SyncWindow]:
    """The windows this sync fetches, decided by coverage (what is stored), not by past events."""
    tz = conn.timezone or "UTC"
    mode = SyncMode(job.mode)
    today = local_today(tz, now)
    if mode is SyncMode.backfill:
        first, last = horizon(tz, now, settings.backfill_days or caps.backfill_days)
        async with session_scope() as session:
            closed = await closed_days(session, conn.id, first, last, tz, now)
        missing = [
            d for d in (first + timedelta(days=i) for i in range((last - first).days + 1)) if d not in closed
        ]
        return slices_of_days(missing, settings.backfill_slice_days or caps.backfill_slice_days, tz)
    if mode is SyncMode.realtime:
        yesterday = today - timedelta(days=1)
        prepared = job.prepared.get(_CLOSED_YESTERDAY)
        if prepared is not None and prepared[:2] == (tz, yesterday):
            closed = prepared[2]  # read in the try's start transaction (core.sync.engine._start)
        else:
            async with session_scope() as session:
                closed = await closed_days(session, conn.id, yesterday, yesterday, tz)
        return [realtime_window(tz, now, conn.last_sync_completed_at, yesterday_closed=yesterday in closed)]
    recent = settings.attribution_days or caps.attribution_window_days
    windows = [attribution_window(tz, now, recent)]
    deep = deep_tier_window(tz, now, recent, caps.revision_days)
    if deep is not None and is_deep_tier_day(conn.id, today):
        windows.append(deep)
    return windows


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
    windows = await plan_windows(job, caps, conn, settings, now)
    today = local_today(conn.timezone or "UTC", now)
    if job.mode == SyncMode.realtime and isinstance(provider, PacesRealtime):
        if all(w.start >= today for w in windows):  # a tick that closes yesterday always runs
            reason = await provider.realtime_pause(pctx, account_ref(conn))
            if reason:
                raise SyncSkipped(reason)
    total = len(windows)
    if job.mode == SyncMode.backfill:
        total = max(
            total,
            total_backfill_slices(
                settings.backfill_days or caps.backfill_days,
                settings.backfill_slice_days or caps.backfill_slice_days,
            ),
        )
    done = total - len(windows)
    job.pending.append(
        _run_update(
            run_id,
            slices_total=total,
            slices_done=done,
            window_start=min((w.start for w in windows), default=None),
            window_end=max((w.end for w in windows), default=None),
        )
    )
    for window in windows:
        await _fetch_window(job, provider, pctx, loaded, window, now)
        done += 1
        before, reason = pctx.coverage.take()
        days = _days(window)
        gone = [d for d in days if before is not None and d < before]
        # Recorded in the sync's next transaction (the next batch's, or the finish's): the window's
        # coverage and progress cost no transaction of their own.
        job.pending.append(_window_done(conn, run_id, days, gone, reason, now, done, job.stats["rows"]))
        if job.mode == SyncMode.backfill:  # a backfill's checkpoint is written at once
            job.pending.append(_backfill_cursor(conn.id, window.start))
            async with job_session(job):
                pass
        snapshot_log.info(
            "window_synced", window=str(window), rows=job.stats["rows"], slices=f"{done}/{total}"
        )


Write = Callable[[AsyncSession], Awaitable[None]]


def _run_update(run_id: uuid.UUID, **values: Any) -> Write:
    async def write(session: AsyncSession) -> None:
        await status.update_run(session, run_id, **values)

    return write


def _window_done(
    conn: Connection,
    run_id: uuid.UUID,
    days: list[date],
    gone: list[date],
    reason: str | None,
    now: datetime,
    done: int,
    rows: int,
) -> Write:
    async def write(session: AsyncSession) -> None:
        # The fetch started at ``now``: a day counts as closed only if ``now`` is past its end.
        await record_fetched(session, conn.id, [d for d in days if d not in gone], now)
        if gone:  # the provider cannot read these: not available (never zero), not fetched again
            await record_unavailable(
                session, conn.id, gone, now, reason or "not available", conn.timezone or "UTC"
            )
        await status.update_run(session, run_id, slices_done=done, rows_written=rows)

    return write


def _backfill_cursor(connection_id: uuid.UUID, oldest_done: date) -> Write:
    async def write(session: AsyncSession) -> None:
        await status.set_backfill_cursor(session, connection_id, oldest_done)

    return write


_CLOSED_YESTERDAY = "closed_yesterday"


async def prepare(session: AsyncSession, job: SyncJob, conn: Connection) -> None:
    """Read in the try's start transaction what a realtime sync plans from: whether yesterday is
    closed (its final totals stored). Planning uses it unless the timezone or day changed since."""
    if job.mode != SyncMode.realtime:
        return
    tz = conn.timezone or "UTC"
    yesterday = local_today(tz, datetime.now(UTC)) - timedelta(days=1)
    closed = await closed_days(session, conn.id, yesterday, yesterday, tz)
    job.prepared[_CLOSED_YESTERDAY] = (tz, yesterday, closed)


def _days(window: SyncWindow) -> list[date]:
    return [window.start + timedelta(days=i) for i in range((window.end - window.start).days + 1)]


async def default_work(job: SyncJob, ctx: dict[str, Any], loaded: Loaded, run_id: uuid.UUID) -> None:
    """Validate the token, refresh account facts, sync entities, then metrics for every window."""
    settings: Settings = ctx["settings"]
    provider = loaded.provider
    pctx = provider_context(ctx, loaded)
    try:
        provider.check_credentials(loaded.credentials)
        refreshed = await provider.validate_token(pctx, account_ref(loaded.connection), loaded.credentials)
        if refreshed is not None:
            await store_credentials(job.connection_id, refreshed)
            loaded.credentials = refreshed
        await _refresh_account(provider, pctx, loaded)
        await _sync_entities(job, provider, pctx, loaded)
        await _sync_metrics(job, provider, pctx, loaded, run_id, settings)
    finally:
        job.stats.update(pctx.limiter.stats())


default_work.prepare = prepare  # type: ignore[attr-defined]
