"""A sync whose worker is SIGKILLed on every try is closed: runs ``abandoned``, connection ``error``.

Before, its last ``sync_runs`` row read ``running`` forever, the connection stayed
``syncing``, and once arq's result expired the job API said ``in_progress`` forever.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import httpx
import pytest

import core.keys as keys
from core.enqueue import enqueue_sync_job
from tests.conftest import fetch_all, fetch_one
from tests.integration.test_api_support import OPERATOR, api

__all__ = ["api"]  # fixture

pytestmark = pytest.mark.slow

RUNS = (
    "SELECT try_number, status, error_kind, error_message FROM sync_runs "
    "WHERE job_id = :j ORDER BY try_number"
)


async def _until(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := await check():
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_sync_killed_on_every_try_ends_in_error_and_the_job_api_says_so(
    api: httpx.AsyncClient, make_connection: Any, worker_process: Any, sim: Any, redis_client: Any
) -> None:
    # a short job timeout hands a dead worker's job to the next worker soon (timeout + 10 s);
    # a short result expiry lets the job API be asked after arq forgot the job
    env = {"METRICX_JOB_TIMEOUT_S": "4", "METRICX_KEEP_RESULT_S": "2"}
    sim.control(slow_s=0.5)
    ws, conn = await make_connection()
    job = await enqueue_sync_job(str(conn), str(ws), backfill=True, redis=redis_client)
    job_id = job["job_id"]
    for attempt in (1, 2, 3):
        worker = worker_process(**env)

        async def running(attempt: int = attempt) -> bool:
            return any(
                r.try_number == attempt and r.status == "running" for r in await fetch_all(RUNS, j=job_id)
            )

        await _until(running, 40, f"try {attempt} to start")
        worker.stop(signal.SIGKILL)

    closer = worker_process(**env)  # gets the job's one call past its tries, which closes it

    async def closed() -> Any:
        row = await fetch_one(
            "SELECT sync_status, last_error_kind, last_sync_error, current_job_id "
            "FROM connections WHERE id = :c",
            c=conn,
        )
        return row if row.sync_status == "error" else None

    row = await _until(closed, 40, "the connection to show the error")
    assert row.last_error_kind == "interrupted" and row.current_job_id is None
    assert "stopped on each of its 3 tries" in row.last_sync_error
    runs = await fetch_all(RUNS, j=job_id)
    assert [(r.try_number, r.status) for r in runs] == [(1, "abandoned"), (2, "abandoned"), (3, "abandoned")]
    assert all(r.error_kind == "interrupted" for r in runs)
    assert "sync_abandoned" in closer.output()
    assert await redis_client.get(keys.active_sync(str(conn))) is None  # the next sync may be queued

    # once arq has forgotten the job, the API answers from sync_runs: failed, never in_progress
    async def forgotten() -> bool:
        return not await redis_client.exists(keys.arq_result(job_id), keys.arq_job(job_id))

    await _until(forgotten, 20, "arq's result to expire")
    key = await api.post(f"/v1/workspaces/{ws}/api-keys", json={"name": "t"}, headers=OPERATOR)
    headers = {"Authorization": f"Bearer {key.json()['key']}"}
    answer = await api.get(f"/v1/workspaces/{ws}/jobs/{job_id}", headers=headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["status"], body["tries"]) == ("failed", 3)
    assert "stopped mid-sync" in body["error"]
    conn_view = await api.get(f"/v1/workspaces/{ws}/connections/{conn}", headers=headers)
    assert conn_view.json()["sync_status"] == "error"
