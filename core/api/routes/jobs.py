"""Job status (from arq, completed by the sync's ``sync_runs`` rows) and each connection's run history."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from arq.jobs import Job, JobStatus
from fastapi import APIRouter, Path
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.api.deps import ConnectionDep, PageDep, RedisDep, SessionDep, WorkspaceDep
from core.api.errors import not_found
from core.api.schemas import NO_NUL, JobPublic, Page, Progress, SyncRunPublic
from core.config import get_settings
from core.db.models import Connection, SyncRun
from core.redis import deserialize
from core.services import job_outcome
from core.state import RunStatus, SyncJobId

router = APIRouter(prefix="/workspaces/{workspace_id}", tags=["jobs"])

# A job's status as the API names it, from its latest try once arq no longer knows the job
# (its result expired). A job arq has forgotten runs no more: a try still ``running``,
# ``retrying`` or ``waiting`` there lost its worker or its queue entry, so it reads failed.
RUN_STATUS: dict[str, str] = {
    RunStatus.complete: "complete",
    RunStatus.deferred: "complete",
    RunStatus.merged: "complete",
}
LOST = "the job is no longer queued or running (its worker or queue entry was lost)"


def job_connection(job_id: str) -> uuid.UUID | None:
    """The connection of a sync job id (``sync:{connection_id}:{mode}:{slot}``), else None."""
    parsed = SyncJobId.parse(job_id)
    if parsed is None:
        return None
    try:
        return uuid.UUID(parsed.connection_id)
    except ValueError:
        return None


def _ms(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value / 1000, UTC)
    return None


async def _latest_run(session: AsyncSession, job_id: str) -> SyncRun | None:
    return await session.scalar(
        select(SyncRun).where(SyncRun.job_id == job_id).order_by(SyncRun.try_number.desc()).limit(1)
    )


async def _from_arq(job_id: str, redis: RedisDep, run: SyncRun | None) -> dict[str, Any] | None:
    job = Job(job_id, redis, _queue_name=get_settings().queue_name, _deserializer=deserialize)
    state = await job.status()
    if state is JobStatus.not_found:
        return None
    info = await job.info()
    out: dict[str, Any] = {
        "tries": getattr(info, "job_try", None) or (run.try_number if run else 0),
        "enqueued_at": _ms(getattr(info, "enqueue_time", None)),
        "started_at": run.started_at if run else None,
        "finished_at": None,
        "result": None,
        "error": None,
    }
    if state is JobStatus.complete:
        result = await job.result_info()
        if result is not None:
            out["status"], out["result"], out["error"] = job_outcome(result.success, result.result)
            out["started_at"] = _ms(result.start_time) or out["started_at"]
            out["finished_at"] = _ms(result.finish_time)
            out["tries"] = result.job_try or out["tries"]
            return out
    out["status"] = "in_progress" if state is JobStatus.in_progress else "queued"
    return out


def _from_run(run: SyncRun) -> dict[str, Any]:
    state = RUN_STATUS.get(run.status, "failed")
    failed = state == "failed"
    error = run.error_message if run.status in (RunStatus.failed, RunStatus.abandoned) else LOST
    return {
        "status": state,
        "tries": run.try_number,
        "enqueued_at": None,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "result": None if failed else {"status": str(run.status), "rows": run.rows_written},
        "error": (error or LOST) if failed else None,
    }


@router.get("/jobs/{job_id}", response_model=JobPublic)
async def get_job(
    job_id: Annotated[str, Path(max_length=300, pattern=NO_NUL)],
    workspace: WorkspaceDep,
    session: SessionDep,
    redis: RedisDep,
) -> JobPublic:
    """A sync job's status (queued, in_progress, complete, failed), result or error, and progress."""
    parsed = SyncJobId.parse(job_id)
    connection_id = job_connection(job_id)
    owned = (
        parsed
        and connection_id
        and await session.scalar(
            select(Connection.id).where(
                Connection.id == connection_id, Connection.workspace_id == workspace.id
            )
        )
    )
    if not owned or connection_id is None or parsed is None:
        raise not_found("job")
    run = await _latest_run(session, job_id)
    state = await _from_arq(job_id, redis, run)
    if state is None:
        if run is None:
            raise not_found("job")
        state = _from_run(run)
    progress = Progress(slices_done=run.slices_done, slices_total=run.slices_total) if run else None
    return JobPublic(job_id=job_id, connection_id=connection_id, mode=parsed.mode, progress=progress, **state)


@router.get("/connections/{connection_id}/runs", response_model=Page[SyncRunPublic])
async def list_runs(
    workspace: WorkspaceDep, connection: ConnectionDep, session: SessionDep, page: PageDep
) -> Page[SyncRunPublic]:
    """The connection's sync tries, newest first: mode, window, rows, try, error, progress."""
    where = SyncRun.connection_id == connection.id
    total = await session.scalar(select(func.count()).select_from(SyncRun).where(where)) or 0
    rows = await session.scalars(
        select(SyncRun)
        .where(where)
        .order_by(SyncRun.started_at.desc(), SyncRun.try_number.desc())
        .limit(page.limit)
        .offset(page.offset)
    )
    return page.page([SyncRunPublic.model_validate(r) for r in rows], total)
