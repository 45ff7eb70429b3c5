"""PostgreSQL failing under a sync ends in a retry (never a dropped job), on the last try too."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from arq.worker import Retry
from sqlalchemy import text

import core.keys as keys
from core.config import get_settings
from core.db.engine import session_scope
from core.plugins import get_registry
from core.sync.engine import SyncJob, run_sync
from tests.conftest import fetch_all, fetch_one


async def _connection_killed(job: Any, ctx: Any, loaded: Any, run_id: Any) -> None:
    # A real PostgreSQL fault: the server ends this session's backend, as on a restart.
    async with session_scope() as session:
        await session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))


def _ctx(redis_client: Any) -> dict[str, Any]:
    return {"redis": redis_client, "settings": get_settings(), "registry": get_registry()}


def _job(ws: uuid.UUID, conn: uuid.UUID, job_try: int) -> SyncJob:
    return SyncJob(conn, ws, "realtime", job_id=f"infra-test:{uuid.uuid4().hex[:8]}", job_try=job_try)


async def test_a_database_connection_lost_mid_sync_is_retried(
    make_connection: Any, redis_client: Any
) -> None:
    ws, conn = await make_connection()
    job = _job(ws, conn, job_try=1)
    with pytest.raises(Retry):
        await run_sync(_ctx(redis_client), job, _connection_killed)
    run = await fetch_one(
        "SELECT status, error_kind, error_message FROM sync_runs WHERE job_id = :j", j=job.job_id
    )
    assert (run.status, run.error_kind) == ("retrying", "infrastructure")
    assert "PostgreSQL" in run.error_message
    row = await fetch_one("SELECT sync_status, last_error_kind FROM connections WHERE id = :c", c=conn)
    assert row.sync_status == "queued"  # not error: the next try is coming


async def test_the_last_try_is_given_back_when_the_database_failed(
    make_connection: Any, redis_client: Any
) -> None:
    ws, conn = await make_connection()
    settings = get_settings()
    job = _job(ws, conn, job_try=settings.max_tries)
    await redis_client.set(keys.arq_retry(job.job_id), settings.max_tries)
    with pytest.raises(Retry):
        await run_sync(_ctx(redis_client), job, _connection_killed)
    # arq counts the next start as this try again, so the job is not failed for "max tries".
    assert int(await redis_client.get(keys.arq_retry(job.job_id))) == settings.max_tries - 1
    runs = await fetch_all("SELECT status FROM sync_runs WHERE job_id = :j", j=job.job_id)
    assert [r.status for r in runs] == ["retrying"]
