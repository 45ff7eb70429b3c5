"""Connection status and ``sync_runs`` bookkeeping, each change in its own short transaction."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import Connection, SyncRun

MAX_ERROR = 500


def clip(message: str) -> str:
    """An error message as stored: one line of at most 500 characters."""
    text = " ".join(message.split())
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"


def utcnow() -> datetime:
    return datetime.now(UTC)


async def mark_started(
    session: AsyncSession,
    connection_id: uuid.UUID,
    workspace_id: uuid.UUID,
    job_id: str,
    job_try: int,
    mode: str,
) -> uuid.UUID:
    """``syncing``, one more attempt, and a running ``sync_runs`` row for this try."""
    now = utcnow()
    await session.execute(
        update(Connection)
        .where(Connection.id == connection_id)
        .values(
            sync_status="syncing",
            last_sync_attempted_at=now,
            total_syncs_attempted=Connection.total_syncs_attempted + 1,
            current_job_id=job_id,
        )
    )
    # An earlier try of this job whose worker died never closed its run: close it now.
    await session.execute(
        update(SyncRun)
        .where(SyncRun.job_id == job_id, SyncRun.status == "running")
        .values(
            status="failed",
            error_kind="interrupted",
            error_message="worker stopped mid-sync",
            finished_at=now,
        )
    )
    run = SyncRun(
        workspace_id=workspace_id,
        connection_id=connection_id,
        job_id=job_id,
        mode=mode,
        try_number=job_try,
        status="running",
        started_at=now,
    )
    session.add(run)
    await session.flush()
    return run.id


async def update_run(session: AsyncSession, run_id: uuid.UUID, **values: Any) -> None:
    await session.execute(update(SyncRun).where(SyncRun.id == run_id).values(**values))


async def mark_succeeded(session: AsyncSession, connection_id: uuid.UUID, *, backfill: bool) -> None:
    values: dict[str, Any] = {
        "sync_status": "idle",
        "last_sync_completed_at": utcnow(),
        "last_sync_error": None,
        "last_error_kind": None,
        "rate_limited_until": None,
        "total_syncs_succeeded": Connection.total_syncs_succeeded + 1,
        "current_job_id": None,
    }
    if backfill:
        values.update(backfill_completed_at=utcnow(), backfill_cursor=None)
    await session.execute(update(Connection).where(Connection.id == connection_id).values(**values))


async def mark_failed(
    session: AsyncSession,
    connection_id: uuid.UUID,
    *,
    sync_status: str,
    kind: str,
    message: str,
    rate_limited_until: datetime | None = None,
    keep_job: bool = False,
) -> None:
    values: dict[str, Any] = {
        "sync_status": sync_status,
        "last_sync_error": clip(message),
        "last_error_kind": kind,
        "rate_limited_until": rate_limited_until,
    }
    if not keep_job:
        values["current_job_id"] = None
    await session.execute(update(Connection).where(Connection.id == connection_id).values(**values))


async def stuck_connections(session: AsyncSession, older_than_s: int) -> list[tuple[uuid.UUID, str | None]]:
    """Connections marked ``syncing`` / ``queued`` for longer than ``older_than_s`` seconds."""
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    rows = await session.execute(
        select(Connection.id, Connection.current_job_id).where(
            Connection.sync_status.in_(("syncing", "queued")),
            or_(Connection.last_sync_attempted_at.is_(None), Connection.last_sync_attempted_at < cutoff),
        )
    )
    return [(cid, job) for cid, job in rows]


async def repair(session: AsyncSession, connection_id: uuid.UUID, job_id: str | None) -> bool:
    """Turn a connection whose job died into ``error`` with a message saying so; close its run."""
    result = await session.execute(
        update(Connection)
        .where(Connection.id == connection_id, Connection.sync_status.in_(("syncing", "queued")))
        .values(
            sync_status="error",
            last_sync_error="the sync's worker stopped before finishing (crash or timeout); "
            "the next scheduled sync will run again",
            last_error_kind="interrupted",
            current_job_id=None,
        )
    )
    if job_id:
        await session.execute(
            update(SyncRun)
            .where(and_(SyncRun.job_id == job_id, SyncRun.status == "running"))
            .values(
                status="failed",
                error_kind="interrupted",
                error_message="worker stopped",
                finished_at=utcnow(),
            )
        )
    return bool(getattr(result, "rowcount", 0))


async def mark_scope_rate_limited(
    session: AsyncSession,
    scope_key: str,
    *,
    until: datetime,
    message: str,
    exclude: uuid.UUID | None = None,
) -> list[uuid.UUID]:
    """Every active connection sharing throttle scope ``scope_key``: rate limited until ``until``.

    All of them get ``rate_limited_until`` (never shortened), so the fan-out skips them. Idle and
    already rate-limited ones also become ``rate_limited`` with ``message``; a queued or running
    sync keeps its status (its job meets the block itself), and ``error`` / ``reconnect_required``
    keep what the user must see. ``exclude``: the connection whose own failure is recorded apart.
    """
    waiting = Connection.sync_status.in_(("idle", "rate_limited"))
    query = (
        update(Connection)
        .where(Connection.throttle_scopes.contains([scope_key]), Connection.status == "active")
        .values(
            rate_limited_until=func.greatest(func.coalesce(Connection.rate_limited_until, until), until),
            sync_status=case((waiting, "rate_limited"), else_=Connection.sync_status),
            last_sync_error=case((waiting, clip(message)), else_=Connection.last_sync_error),
            last_error_kind=case((waiting, "rate_limited"), else_=Connection.last_error_kind),
        )
        .returning(Connection.id)
        .execution_options(synchronize_session=False)
    )
    if exclude is not None:
        query = query.where(Connection.id != exclude)
    return list((await session.execute(query)).scalars())
