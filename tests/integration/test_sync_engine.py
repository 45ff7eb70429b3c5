"""The sync engine through arq against real PostgreSQL, Redis and the test provider's HTTP simulator."""

from __future__ import annotations

from typing import Any

import pytest

from core.enqueue import enqueue_sync_job
from tests.conftest import fetch_all, fetch_one

COUNTS = """
SELECT (SELECT count(*) FROM entities WHERE connection_id = :c) AS entities,
       (SELECT count(*) FROM metric_snapshots WHERE connection_id = :c) AS snapshots,
       (SELECT count(*) FROM sync_runs WHERE connection_id = :c) AS runs
"""
CONN = "SELECT * FROM connections WHERE id = :c"


async def test_realtime_sync_writes_rows_once_and_ends_idle(
    make_connection: Any, run_worker: Any, redis_client: Any
) -> None:
    ws, conn = await make_connection()
    first = await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    assert first["status"] == "enqueued"
    await run_worker()
    counts = await fetch_one(COUNTS, c=conn)
    # 2 campaigns + 6 ads; 6 ads x (yesterday + today) snapshots
    assert (counts.entities, counts.snapshots, counts.runs) == (8, 12, 1)
    row = await fetch_one(CONN, c=conn)
    assert row.sync_status == "idle" and row.last_sync_error is None
    assert row.total_syncs_attempted == 1 and row.total_syncs_succeeded == 1
    assert row.last_sync_completed_at is not None

    # Re-running overwrites the same 15-minute slot; only a new slot adds today's 6 ads once more.
    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    await run_worker()
    again = await fetch_one(COUNTS, c=conn)
    slots = await fetch_one(
        "SELECT count(DISTINCT captured_at) AS n FROM metric_snapshots WHERE connection_id = :c "
        "AND metrics_date = (SELECT max(metrics_date) FROM metric_snapshots WHERE connection_id = :c)",
        c=conn,
    )
    assert again.entities == 8
    assert again.snapshots == 6 + 6 * slots.n  # yesterday's final row + today's row per slot
    assert slots.n in (1, 2)


async def test_duplicate_requests_yield_one_job(
    make_connection: Any, redis_client: Any, run_worker: Any
) -> None:
    ws, conn = await make_connection()
    results = [
        await enqueue_sync_job(str(conn), str(ws), backfill=True, redis=redis_client) for _ in range(5)
    ]
    assert results[0]["status"] == "enqueued"
    assert {r["job_id"] for r in results} == {results[0]["job_id"]}
    assert [r["status"] for r in results[1:]] == ["already_queued"] * 4
    await run_worker()
    runs = await fetch_all("SELECT job_id FROM sync_runs WHERE connection_id = :c", c=conn)
    assert len(runs) == 1


async def test_transient_errors_retry_with_backoff_then_succeed(
    make_connection: Any, sim: Any, run_worker: Any, redis_client: Any
) -> None:
    ws, conn = await make_connection()
    sim.control(transient=2)
    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    await run_worker()
    runs = await fetch_all(
        "SELECT try_number, status, error_kind, started_at, finished_at FROM sync_runs "
        "WHERE connection_id = :c ORDER BY try_number",
        c=conn,
    )
    assert [(r.try_number, r.status) for r in runs] == [(1, "retrying"), (2, "retrying"), (3, "complete")]
    assert runs[0].error_kind == "transient"
    # backoff: base 0.5 s doubling, jitter x0.5..1.5 -> at least 0.25 s then 0.5 s between tries
    assert (runs[1].started_at - runs[0].finished_at).total_seconds() >= 0.25
    assert (runs[2].started_at - runs[1].finished_at).total_seconds() >= 0.5
    counts = await fetch_one(COUNTS, c=conn)
    assert counts.snapshots == 12
    row = await fetch_one(CONN, c=conn)
    assert row.sync_status == "idle" and row.total_syncs_attempted == 3 and row.total_syncs_succeeded == 1


async def test_in_request_retries_happen_once_and_every_try_is_counted_in_api_calls(
    make_connection: Any, sim: Any, run_worker: Any, redis_client: Any
) -> None:
    # The provider allows two in-request retries (ProviderHTTP), so two 503s cost no job retry,
    # and sync_runs.api_calls counts every request the API received, the failed ones included.
    ws, conn = await make_connection(http_retries=2)
    calls_before = sim.control()["calls"]
    sim.control(transient=2)
    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    await run_worker()
    [run] = await fetch_all(
        "SELECT try_number, status, api_calls FROM sync_runs WHERE connection_id = :c", c=conn
    )
    assert (run.try_number, run.status) == (1, "complete")
    received = sim.control()["calls"] - calls_before
    assert run.api_calls == received
    # validate + account + entities + 2 x metrics per window, plus the two failed metrics calls
    assert received >= 6 and (await fetch_one(COUNTS, c=conn)).snapshots == 12


async def test_transient_errors_exhaust_tries_then_error(
    make_connection: Any, sim: Any, run_worker: Any, redis_client: Any
) -> None:
    ws, conn = await make_connection()
    sim.control(transient=10)
    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    await run_worker()
    row = await fetch_one(CONN, c=conn)
    assert row.sync_status == "error" and row.last_error_kind == "transient"
    assert "503" in row.last_sync_error
    assert row.total_syncs_attempted == 3


async def test_expired_token_needs_reconnect_after_one_try(
    make_connection: Any, run_worker: Any, redis_client: Any
) -> None:
    ws, conn = await make_connection(token="expired-token")
    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    await run_worker()
    row = await fetch_one(CONN, c=conn)
    assert row.sync_status == "reconnect_required"
    assert "reconnect" in row.last_sync_error.lower()
    assert row.total_syncs_attempted == 1
    assert "expired-token" not in row.last_sync_error


async def test_missing_token_is_caught_before_any_call(
    make_connection: Any, sim: Any, run_worker: Any, redis_client: Any
) -> None:
    ws, conn = await make_connection(token=None)
    calls_before = sim.control()["calls"]
    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    await run_worker()
    row = await fetch_one(CONN, c=conn)
    assert row.sync_status == "reconnect_required"
    assert row.last_sync_error == "No token configured. Please reconnect."
    assert sim.control()["calls"] == calls_before


async def test_rate_limit_defers_and_sets_until(
    make_connection: Any, sim: Any, run_worker: Any, redis_client: Any
) -> None:
    ws, conn = await make_connection()
    sim.control(rate_limit_s=2)
    first = await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    await run_worker(max_burst_jobs=1)
    row = await fetch_one(CONN, c=conn)
    assert row.sync_status == "rate_limited"
    assert row.rate_limited_until is not None and row.rate_limited_until > row.last_sync_attempted_at
    run = await fetch_one("SELECT status, try_number FROM sync_runs WHERE job_id = :j", j=first["job_id"])
    assert (run.status, run.try_number) == ("deferred", 1)
    # the throttle lifts: the deferred job runs after retry_after and completes
    sim.control(rate_limit_s=0)
    await run_worker()
    row = await fetch_one(CONN, c=conn)
    assert row.sync_status == "idle" and row.rate_limited_until is None
    assert row.total_syncs_succeeded == 1


async def test_malformed_payload_is_a_clear_error_and_writes_nothing_of_the_batch(
    make_connection: Any, sim: Any, run_worker: Any, redis_client: Any
) -> None:
    ws, conn = await make_connection()
    sim.control(malformed=True)
    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    await run_worker()
    row = await fetch_one(CONN, c=conn)
    assert row.sync_status == "error" and row.last_error_kind == "payload"
    assert "impressions" in row.last_sync_error and "lots" in row.last_sync_error
    counts = await fetch_one(COUNTS, c=conn)
    assert counts.snapshots == 0  # the only batch held the bad row: none of it is stored
    # the worker keeps serving: the next sync of a healthy connection works
    ws2, conn2 = await make_connection()
    sim.control(malformed=False)
    await enqueue_sync_job(str(conn2), str(ws2), redis=redis_client)
    await run_worker()
    assert (await fetch_one(CONN, c=conn2)).sync_status == "idle"


async def test_backfill_is_sliced_newest_first_and_resumes(
    make_connection: Any, run_worker: Any, redis_client: Any
) -> None:
    ws, conn = await make_connection()
    await enqueue_sync_job(str(conn), str(ws), backfill=True, redis=redis_client)
    await run_worker()
    counts = await fetch_one(COUNTS, c=conn)
    assert counts.snapshots == 90 * 6
    run = await fetch_one(
        "SELECT slices_done, slices_total, rows_written FROM sync_runs WHERE connection_id = :c", c=conn
    )
    assert (run.slices_done, run.slices_total, run.rows_written) == (3, 3, 540)
    row = await fetch_one(CONN, c=conn)
    assert row.backfill_completed_at is not None and row.backfill_cursor is None


@pytest.mark.parametrize("bad", ["not-a-uuid"])
async def test_bad_job_arguments_do_not_crash_the_worker(
    bad: str, redis_client: Any, run_worker: Any
) -> None:
    await enqueue_sync_job(bad, bad, redis=redis_client)
    worker = await run_worker()
    assert worker.jobs_complete == 1 and worker.jobs_failed == 0


async def test_stored_errors_never_contain_the_token(
    make_connection: Any, sim: Any, run_worker: Any, redis_client: Any
) -> None:
    # a platform that echoes the token back inside a malformed value must not get it stored
    ws, conn = await make_connection()
    sim.control(malformed=True, malformed_value="tp-valid-token")
    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    await run_worker()
    row = await fetch_one(CONN, c=conn)
    assert row.last_error_kind == "payload" and "impressions" in row.last_sync_error
    assert "tp-valid-token" not in row.last_sync_error
    runs = await fetch_all("SELECT error_message FROM sync_runs WHERE connection_id = :c", c=conn)
    assert all("tp-valid-token" not in (r.error_message or "") for r in runs)
