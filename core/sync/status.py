"""Every write to a connection's sync fields, and ``sync_runs`` bookkeeping (in the caller's transaction).

The sync fields of ``connections`` (``sync_status``, ``current_job_id``,
``last_sync_*``, ``last_error_kind``, ``rate_limited_until``, the totals,
``backfill_*``, ``throttle_scopes``, and the account facts a sync refreshes) are written
here and nowhere else. Every path that queues a sync *claims* the connection first
(``queued`` with the job's id), then enqueues, then gives the claim back if
the job was not enqueued: a worker can never start a job whose claim is not
yet written.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import String, bindparam, case, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import Connection, SyncRun
from core.errors import RateLimited
from core.state import BUSY, ConnectionStatus, RunStatus, SyncJobId, SyncStatus

MAX_ERROR = 500


def clip(message: str) -> str:
    """An error message as stored: one line of at most 500 characters."""
    text = " ".join(message.split())
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- claims: queued before the job exists ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claim:
    """A connection marked ``queued`` for ``job_id``, with what it showed before (to give back)."""

    connection_id: uuid.UUID
    job_id: str
    previous_status: str
    previous_job_id: str | None


# One round trip: the row is locked, its previous status and job read, and it is claimed.
_CLAIM = text(
    """
    UPDATE connections c SET sync_status = :queued, current_job_id = :job
    FROM (SELECT id, sync_status, current_job_id FROM connections WHERE id = :id FOR UPDATE) prev
    WHERE c.id = prev.id
    RETURNING prev.sync_status, prev.current_job_id
    """
)


async def claim(session: AsyncSession, connection_id: uuid.UUID, job_id: str) -> Claim | None:
    """Mark the connection ``queued`` for ``job_id`` (a requested sync); None if it does not exist.

    A user's request claims whatever the connection shows: the enqueue decides
    whether another sync already holds it, and :func:`release` gives the claim back.
    """
    params = {"id": connection_id, "job": job_id, "queued": SyncStatus.queued.value}
    row = (await session.execute(_CLAIM, params)).first()
    if row is None:
        return None
    return Claim(connection_id, job_id, row[0], row[1])


async def release(session: AsyncSession, claims: Iterable[Claim]) -> None:
    """Give claims back whose job was not enqueued, unless a sync has written the row since."""
    for held in claims:
        await session.execute(
            update(Connection)
            .where(Connection.id == held.connection_id, Connection.current_job_id == held.job_id)
            .values(sync_status=held.previous_status, current_job_id=held.previous_job_id)
        )


async def claim_due(
    session: AsyncSession, connection_ids: list[uuid.UUID], mode: str, slot: str
) -> set[uuid.UUID]:
    """Claim many connections for the fan-out's ``sync:{id}:{mode}:{slot}`` jobs, in one statement.

    Only connections with no sync queued or running are claimed, so two fan-outs
    never claim one twice. Returns the ids claimed.
    """
    if not connection_ids:
        return set()
    claimed = await (await session.connection()).execute(
        _CLAIM_DUE, {"ids": connection_ids, "job_id_tail": SyncJobId.tail(mode, slot)}
    )
    return set(claimed.scalars())


# Built once (a fan-out runs it for every page): the job id is SyncJobId's, its ``:{mode}:{slot}``
# tail a parameter, so the statement never changes.
_CLAIM_DUE = (
    update(Connection)
    .where(
        Connection.id == func.any(bindparam("ids", type_=ARRAY(UUID(as_uuid=True)))),
        Connection.sync_status.not_in(BUSY),
    )
    .values(
        sync_status=SyncStatus.queued,
        current_job_id=SyncJobId.sql(Connection.id, bindparam("job_id_tail", type_=String)),
    )
    .returning(Connection.id)
)


async def unclaim_due(session: AsyncSession, previous: Mapping[uuid.UUID, str]) -> None:
    """Give fan-out claims back: each connection still ``queued`` gets its previous status."""
    if not previous:
        return
    await session.connection()
    await session.execute(
        update(Connection.__table__)  # type: ignore[arg-type]
        .where(Connection.id == bindparam("cid"), Connection.sync_status == SyncStatus.queued)
        .values(sync_status=bindparam("prev")),
        [{"cid": cid, "prev": prev} for cid, prev in previous.items()],
    )


async def point_to_jobs(session: AsyncSession, jobs: Mapping[uuid.UUID, str | None]) -> None:
    """Claimed connections that another sync holds: ``current_job_id`` names that sync's job."""
    if not jobs:
        return
    await session.connection()
    await session.execute(
        update(Connection.__table__)  # type: ignore[arg-type]
        .where(Connection.id == bindparam("cid"))
        .values(current_job_id=bindparam("job")),
        [{"cid": cid, "job": job} for cid, job in jobs.items()],
    )


# --- one try of a sync ------------------------------------------------------------------------------


# One round trip: the connection is ``syncing`` with one more attempt; an earlier try of this job
# whose worker died never closed its run (closed now as abandoned); the job's wait for its turn (if
# it waited for a busy connection) is over; and this try gets its running row.
_MARK_STARTED = text(
    """
    WITH started AS (
        UPDATE connections
        SET sync_status = :syncing, last_sync_attempted_at = :now,
            total_syncs_attempted = total_syncs_attempted + 1, current_job_id = :job_id
        WHERE id = :connection_id
    ),
    abandoned AS (
        UPDATE sync_runs
        SET status = :abandoned, error_kind = 'interrupted', error_message = :abandoned_message,
            finished_at = :now
        WHERE job_id = :job_id AND status = :running
    ),
    waited AS (
        UPDATE sync_runs SET status = :waited, finished_at = :now
        WHERE job_id = :job_id AND status = :waiting
    )
    INSERT INTO sync_runs (id, workspace_id, connection_id, job_id, mode, try_number, status, started_at)
    VALUES (:run_id, :workspace_id, :connection_id, :job_id, :mode, :job_try, :running, :now)
    """
)


async def mark_started(
    session: AsyncSession,
    connection_id: uuid.UUID,
    workspace_id: uuid.UUID,
    job_id: str,
    job_try: int,
    mode: str,
) -> uuid.UUID:
    """``syncing``, one more attempt, and a running ``sync_runs`` row for this try (one statement)."""
    run_id = uuid.uuid4()
    await session.execute(
        _MARK_STARTED,
        {
            "run_id": run_id,
            "connection_id": connection_id,
            "workspace_id": workspace_id,
            "job_id": job_id,
            "job_try": job_try,
            "mode": mode,
            "now": utcnow(),
            "syncing": SyncStatus.syncing.value,
            "running": RunStatus.running.value,
            "abandoned": RunStatus.abandoned.value,
            "abandoned_message": ABANDONED,
            "waited": RunStatus.waited.value,
            "waiting": RunStatus.waiting.value,
        },
    )
    return run_id


ABANDONED = "the try's worker stopped mid-sync (killed, crashed or lost)"


async def close_abandoned(session: AsyncSession, job_id: str) -> int:
    """Mark the job's tries still ``running`` as ``abandoned`` (their worker died); how many."""
    result = await session.execute(
        update(SyncRun)
        .where(SyncRun.job_id == job_id, SyncRun.status == RunStatus.running)
        .values(
            status=RunStatus.abandoned,
            error_kind="interrupted",
            error_message=ABANDONED,
            finished_at=utcnow(),
        )
    )
    return int(getattr(result, "rowcount", 0))


#: ``sync_runs.try_number`` of a job's wait for its busy connection (its tries count from 1).
WAIT_TRY = 0


async def mark_waiting(
    session: AsyncSession, connection_id: uuid.UUID, workspace_id: uuid.UUID, job_id: str, mode: str, why: str
) -> float:
    """Record that the job waits for its busy connection (one row per job); seconds waited so far."""
    now = utcnow()
    row = await session.scalar(
        select(SyncRun).where(SyncRun.job_id == job_id, SyncRun.try_number == WAIT_TRY).with_for_update()
    )
    if row is None:
        session.add(
            SyncRun(
                workspace_id=workspace_id,
                connection_id=connection_id,
                job_id=job_id,
                mode=mode,
                try_number=WAIT_TRY,
                status=RunStatus.waiting,
                started_at=now,
                error_kind="lock_busy",
                error_message=clip(why),
            )
        )
        await session.flush()
        return 0.0
    row.error_message = clip(why)
    if row.status != RunStatus.waiting:  # an earlier wait of this job ended; this is a new one
        row.status, row.started_at, row.finished_at = RunStatus.waiting, now, None
        return 0.0
    return (now - row.started_at).total_seconds()


async def mark_merged(session: AsyncSession, job_id: str, message: str) -> None:
    """The job's wait ended without its turn: the connection's next sync does its work."""
    await session.execute(
        update(SyncRun)
        .where(SyncRun.job_id == job_id, SyncRun.try_number == WAIT_TRY)
        .values(status=RunStatus.merged, finished_at=utcnow(), error_message=clip(message))
    )


async def update_run(session: AsyncSession, run_id: uuid.UUID, **values: Any) -> None:
    """Record progress or the outcome on one ``sync_runs`` row."""
    await session.execute(update(SyncRun).where(SyncRun.id == run_id).values(**values))


async def mark_succeeded(session: AsyncSession, connection_id: uuid.UUID, *, backfill: bool) -> None:
    """``idle``, completed now, error cleared; a finished backfill is recorded."""
    values: dict[str, Any] = {
        "sync_status": SyncStatus.idle,
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


# One round trip: the connection is ``idle`` (completed now, error cleared, one more success; a
# finished backfill recorded), the try's row is ``complete`` with its counts, and an announced error
# alert turns ``ok`` (returned: its recovery is announced).
_FINISH_SUCCEEDED = text(
    """
    WITH succeeded AS (
        UPDATE connections
        SET sync_status = :idle, last_sync_completed_at = :now, last_sync_error = NULL,
            last_error_kind = NULL, rate_limited_until = NULL,
            total_syncs_succeeded = total_syncs_succeeded + 1, current_job_id = NULL,
            backfill_completed_at = CASE WHEN :backfill THEN :now ELSE backfill_completed_at END,
            backfill_cursor = CASE WHEN :backfill THEN NULL ELSE backfill_cursor END
        WHERE id = :connection_id
    ),
    recovered AS (
        UPDATE alert_states SET condition = 'ok', updated_at = now()
        WHERE connection_id = :connection_id AND condition <> 'ok'
        RETURNING connection_id
    ),
    run AS (
        UPDATE sync_runs
        SET status = :complete, finished_at = :now, rows_written = :rows_written,
            entities_written = :entities_written, api_calls = :api_calls,
            seconds_throttled = :seconds_throttled
        WHERE id = :run_id
    )
    SELECT count(*) FROM recovered
    """
)


async def finish_succeeded(
    session: AsyncSession,
    connection_id: uuid.UUID,
    run_id: uuid.UUID,
    *,
    backfill: bool,
    rows_written: int,
    entities_written: int,
    api_calls: int,
    seconds_throttled: float,
) -> bool:
    """:func:`mark_succeeded` and the try's ``complete`` row in one statement; True if an announced
    error alert of the connection was turned ``ok`` (the caller announces the recovery)."""
    recovered = await session.scalar(
        _FINISH_SUCCEEDED,
        {
            "connection_id": connection_id,
            "run_id": run_id,
            "now": utcnow(),
            "backfill": backfill,
            "idle": SyncStatus.idle.value,
            "complete": RunStatus.complete.value,
            "rows_written": rows_written,
            "entities_written": entities_written,
            "api_calls": api_calls,
            "seconds_throttled": seconds_throttled,
        },
    )
    return bool(recovered)


async def mark_failed(
    session: AsyncSession,
    connection_id: uuid.UUID,
    *,
    sync_status: SyncStatus,
    kind: str,
    message: str,
    rate_limited_until: datetime | None = None,
    keep_job: bool = False,
) -> None:
    """The try's failure as the connection shows it; ``keep_job`` while arq retries the same job."""
    values: dict[str, Any] = {
        "sync_status": sync_status,
        "last_sync_error": clip(message),
        "last_error_kind": kind,
        "rate_limited_until": rate_limited_until,
    }
    if not keep_job:
        values["current_job_id"] = None
    await session.execute(update(Connection).where(Connection.id == connection_id).values(**values))


async def set_backfill_cursor(session: AsyncSession, connection_id: uuid.UUID, oldest_done: date) -> None:
    """Checkpoint a backfill: every day from ``oldest_done`` on is stored."""
    await session.execute(
        update(Connection).where(Connection.id == connection_id).values(backfill_cursor=oldest_done)
    )


async def update_account_facts(
    session: AsyncSession, connection_id: uuid.UUID, changes: Mapping[str, Any]
) -> None:
    """The account's name, timezone and currency as the platform reported them."""
    allowed = {"name", "timezone", "currency"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"not account facts: {sorted(unknown)}")
    await session.execute(update(Connection).where(Connection.id == connection_id).values(**changes))


# --- repairs ------------------------------------------------------------------------------------------


async def stuck_connections(session: AsyncSession, older_than_s: int) -> list[tuple[uuid.UUID, str | None]]:
    """Connections marked ``syncing`` / ``queued`` for longer than ``older_than_s`` seconds."""
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    rows = await session.execute(
        select(Connection.id, Connection.current_job_id).where(
            Connection.sync_status.in_(BUSY),
            or_(Connection.last_sync_attempted_at.is_(None), Connection.last_sync_attempted_at < cutoff),
        )
    )
    return [(cid, job) for cid, job in rows]


async def repair(session: AsyncSession, connection_id: uuid.UUID, job_id: str | None) -> bool:
    """Turn a connection whose job died into ``error`` with a message saying so; close its run."""
    result = await session.execute(
        update(Connection)
        .where(Connection.id == connection_id, Connection.sync_status.in_(BUSY))
        .values(
            sync_status=SyncStatus.error,
            last_sync_error="the sync's worker stopped before finishing (crash or timeout); "
            "the next scheduled sync will run again",
            last_error_kind="interrupted",
            current_job_id=None,
        )
    )
    if job_id:
        await close_abandoned(session, job_id)
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
    waiting = Connection.sync_status.in_((SyncStatus.idle, SyncStatus.rate_limited))
    query = (
        update(Connection)
        .where(Connection.throttle_scopes.contains([scope_key]), Connection.status == ConnectionStatus.active)
        .values(
            rate_limited_until=func.greatest(func.coalesce(Connection.rate_limited_until, until), until),
            sync_status=case((waiting, SyncStatus.rate_limited.value), else_=Connection.sync_status),
            last_sync_error=case((waiting, clip(message)), else_=Connection.last_sync_error),
            last_error_kind=case((waiting, RateLimited.kind), else_=Connection.last_error_kind),
        )
        .returning(Connection.id)
        .execution_options(synchronize_session=False)
    )
    if exclude is not None:
        query = query.where(Connection.id != exclude)
    return list((await session.execute(query)).scalars())


async def store_throttle_scopes(session: AsyncSession, connection_id: uuid.UUID, keys: list[str]) -> None:
    """The throttle-scope keys a sync verified for the connection (see core/sync/throttle.py)."""
    await session.execute(
        update(Connection).where(Connection.id == connection_id).values(throttle_scopes=keys)
    )
