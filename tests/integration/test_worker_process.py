"""The worker as users run it: `arq core.worker.WorkerSettings` processes, including one killed mid-sync."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from typing import Any

from core.enqueue import enqueue_sync_job
from tests.conftest import fetch_one

COUNTS = """
SELECT (SELECT count(*) FROM entities WHERE connection_id = :c) AS entities,
       (SELECT count(*) FROM metric_snapshots WHERE connection_id = :c) AS snapshots,
       (SELECT count(*) FROM sync_runs WHERE connection_id = :c) AS runs
"""


async def wait_for(sql: str, predicate: Any, timeout_s: float = 60, **params: Any) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        row = await fetch_one(sql, **params)
        if predicate(row):
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting; last row: {row}")
        await asyncio.sleep(0.2)


async def test_arq_worker_process_runs_a_sync_end_to_end(
    make_connection: Any, worker_process: Any, redis_client: Any
) -> None:
    worker = worker_process()
    for line in (
        "[ARQ] Worker starting up (job processor)",
        "[ARQ] Python: 3.11",
        "[ARQ] Max concurrent jobs: 10",
        "[ARQ] Job timeout: 600s (10 min)",
    ):
        assert line in worker.output()
    ws, conn = await make_connection()
    job = await enqueue_sync_job(str(conn), str(ws), backfill=True, redis=redis_client)
    done = "SELECT sync_status, total_syncs_succeeded FROM connections WHERE id = :c"
    await wait_for(done, lambda r: r.total_syncs_succeeded == 1, c=conn)
    first = await fetch_one(COUNTS, c=conn)
    assert (first.entities, first.snapshots, first.runs) == (8, 540, 1)
    run = await fetch_one("SELECT status, rows_written FROM sync_runs WHERE job_id = :j", j=job["job_id"])
    assert (run.status, run.rows_written) == ("complete", 540)

    await enqueue_sync_job(str(conn), str(ws), backfill=True, redis=redis_client)
    row = await wait_for(done, lambda r: r.total_syncs_succeeded == 2, c=conn)
    assert row.sync_status == "idle"
    again = await fetch_one(COUNTS, c=conn)
    assert (again.entities, again.snapshots) == (first.entities, first.snapshots)
    worker.stop(signal.SIGTERM)
    assert "[ARQ] Jobs processed: 2" in worker.output()  # the seed's shutdown stats


async def test_worker_killed_mid_sync_another_finishes_without_duplicates(
    make_connection: Any, worker_process: Any, sim: Any, redis_client: Any
) -> None:
    # Short job timeout so arq hands the orphaned job to another worker soon (timeout + 10 s).
    env = {"METRICX_JOB_TIMEOUT_S": "8"}
    sim.control(slow_s=0.25)
    ws, conn = await make_connection()
    first = worker_process(**env)
    job = await enqueue_sync_job(str(conn), str(ws), backfill=True, redis=redis_client)
    await wait_for(
        "SELECT coalesce(max(slices_done), 0) AS done FROM sync_runs WHERE job_id = :j",
        lambda r: r.done >= 1,
        j=job["job_id"],
    )
    first.stop(signal.SIGKILL)
    mid = await fetch_one("SELECT sync_status FROM connections WHERE id = :c", c=conn)
    assert mid.sync_status == "syncing"

    worker_process(**env)
    row = await wait_for(
        "SELECT sync_status, total_syncs_succeeded FROM connections WHERE id = :c",
        lambda r: r.total_syncs_succeeded == 1,
        timeout_s=90,
        c=conn,
    )
    assert row.sync_status == "idle"
    counts = await fetch_one(COUNTS, c=conn)
    assert counts.snapshots == 540  # every day of the 90, each written once
    dupes = await fetch_one(
        "SELECT count(*) AS n FROM (SELECT entity_id, metrics_date FROM metric_snapshots "
        "WHERE connection_id = :c "
        "GROUP BY 1, 2 HAVING count(*) > 1) d",
        c=conn,
    )
    assert dupes.n == 0
    runs = await fetch_one(
        "SELECT count(*) AS n, min(status) AS first_status, max(try_number) AS tries, "
        "bool_or(status = 'running') AS open FROM sync_runs WHERE job_id = :j",
        j=job["job_id"],
    )
    assert runs.tries == 2 and not runs.open
    resumed = await fetch_one(
        "SELECT rows_written FROM sync_runs WHERE job_id = :j AND try_number = 2", j=job["job_id"]
    )
    assert resumed.rows_written < 540  # the second try resumed after the checkpointed slice


def test_python_m_core_worker_prints_the_seed_lines(metricx_env: Any, tmp_path: Any) -> None:
    import os

    log = tmp_path / "w.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "core.worker"],
            env={**os.environ, **metricx_env.env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while "Listening on" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    text = log.read_text()
    assert "[ARQ] Worker starting up (job processor)" in text
    assert f"[ARQ] Queue: {metricx_env.env['METRICX_QUEUE_NAME']}" in text
    assert "[ARQ] Jobs processed: 0" in text
