"""Waiting for a busy connection: no try used, a ``sync_runs`` record, merged past a bound, dead tries' locks.

The holder here is a lock some other sync took (its job id as the lock's value, as the
engine writes it); the waiter is a real ``process_sync_job`` run by an in-process arq worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from arq.jobs import Job

import core.keys as keys
from core.config import get_settings
from core.enqueue import enqueue_sync_job
from core.redis import deserialize
from tests.conftest import fetch_all

RUNS = (
    "SELECT job_id, try_number, status, error_kind, error_message FROM sync_runs "
    "WHERE connection_id = :c ORDER BY started_at, try_number"
)


@pytest.fixture
def quick_waits(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("METRICX_LOCK_WAIT_POLL_S", "0.2")
    monkeypatch.setenv("METRICX_LOCK_WAIT_MAX_S", "1.5")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


async def test_a_sync_waiting_past_the_bound_is_merged_with_the_next_sync(
    make_connection: Any, run_worker: Any, redis_client: Any, quick_waits: None
) -> None:
    ws, conn = await make_connection()
    lock = keys.connection_lock(conn)
    await redis_client.set(lock, "shopify:holder:1", px=60_000)
    first = await enqueue_sync_job(str(conn), str(ws), redis=redis_client)

    async def holder_finishes_after_the_merge() -> None:
        while not any(r.status == "merged" for r in await fetch_all(RUNS, c=conn)):
            await asyncio.sleep(0.1)
        await redis_client.delete(lock)

    releaser = asyncio.ensure_future(holder_finishes_after_the_merge())
    await asyncio.wait_for(run_worker(horizon_s=3), 60)
    await asyncio.wait_for(releaser, 1)
    runs = await fetch_all(RUNS, c=conn)
    merged = [r for r in runs if r.job_id == first["job_id"]]
    assert [(r.try_number, r.status, r.error_kind) for r in merged] == [(0, "merged", "lock_busy")]
    assert (
        "shopify:holder:1" in merged[0].error_message
        and "merged with its next sync" in merged[0].error_message
    )
    nxt = [r for r in runs if r.job_id != first["job_id"]]
    assert nxt and nxt[0].job_id in merged[0].error_message
    assert {(r.try_number, r.status) for r in nxt} - {(0, "waited")} == {(1, "complete")}
    result = await redis_client.get(keys.arq_result(first["job_id"]))
    assert result is not None  # arq finished the first job normally: no "max retries exceeded"


async def test_waiting_gives_the_try_back_and_is_recorded(
    make_connection: Any, run_worker: Any, redis_client: Any, quick_waits: None
) -> None:
    ws, conn = await make_connection()
    lock = keys.connection_lock(conn)
    await redis_client.set(lock, "sync:other:backfill:1", px=1_000)  # a holder for one second
    job = await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    await asyncio.wait_for(run_worker(horizon_s=3), 60)
    runs = await fetch_all(RUNS, c=conn)
    assert [(r.try_number, r.status) for r in runs] == [(0, "waited"), (1, "complete")]
    assert "sync:other:backfill:1" in runs[0].error_message
    # about five re-defers in that second, with max_tries=3: arq counted one try in the end
    info = await Job(job["job_id"], redis_client, _deserializer=deserialize).result_info()
    assert info is not None and info.success and info.job_try == 1


async def test_a_retried_try_takes_over_the_lock_its_dead_try_held(
    make_connection: Any, run_worker: Any, redis_client: Any, quick_waits: None
) -> None:
    ws, conn = await make_connection()
    job = await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    # the job's earlier try died holding the connection (the lock would stay until its ttl)
    await redis_client.set(keys.connection_lock(conn), job["job_id"], px=120_000)
    await asyncio.wait_for(run_worker(horizon_s=3), 30)
    runs = await fetch_all(RUNS, c=conn)
    assert [(r.try_number, r.status) for r in runs] == [(1, "complete")]
    assert await redis_client.get(keys.connection_lock(conn)) is None  # released when it finished
