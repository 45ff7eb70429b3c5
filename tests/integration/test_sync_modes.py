"""The sync mode travels as itself (enqueue -> job -> engine); the seed's two flags still work."""

from __future__ import annotations

from typing import Any

from arq.jobs import Job

from core.enqueue import enqueue_sync_job
from core.providers import SyncMode
from core.redis import deserialize
from tests.conftest import fetch_all

RUNS = "SELECT job_id, mode, status FROM sync_runs WHERE connection_id = :c ORDER BY started_at"


async def test_enqueued_sync_carries_its_mode(
    make_connection: Any, redis_client: Any, run_worker: Any
) -> None:
    ws, conn = await make_connection()
    queued = await enqueue_sync_job(str(conn), str(ws), mode=SyncMode.attribution, redis=redis_client)
    info = await Job(queued["job_id"], redis_client, _deserializer=deserialize).info()
    assert info is not None
    assert (list(info.args), info.kwargs) == ([str(conn), str(ws)], {"mode": "attribution"})
    await run_worker()
    assert [(r.job_id, r.mode, r.status) for r in await fetch_all(RUNS, c=conn)] == [
        (queued["job_id"], "attribution", "complete")
    ]


async def test_seed_style_flags_still_select_the_mode(
    make_connection: Any, redis_client: Any, run_worker: Any
) -> None:
    from core.redis import create_arq_pool

    ws, conn = await make_connection()
    pool = await create_arq_pool()
    try:
        # The seed's call: process_sync_job(connection_id, workspace_id, force_refresh, backfill)
        await pool.enqueue_job("process_sync_job", str(conn), str(ws), True, False, _job_id=f"seed-{conn}")
    finally:
        await pool.aclose()
    await run_worker()
    assert [(r.mode, r.status) for r in await fetch_all(RUNS, c=conn)] == [("attribution", "complete")]


async def test_an_unknown_mode_fails_the_job_with_a_clear_message(make_connection: Any) -> None:
    from core.jobs import process_sync_job

    ws, conn = await make_connection()
    result = await process_sync_job({"job_id": "x"}, str(conn), str(ws), mode="weekly")
    assert result["status"] == "failed" and result["error_kind"] == "config"
    assert "mode must be one of realtime, attribution, backfill" in result["error"]
