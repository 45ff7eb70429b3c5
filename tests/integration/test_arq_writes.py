"""Jobs core writes straight into Redis look exactly like arq's own enqueues (keys, expiry, payload)."""

from __future__ import annotations

import uuid
from typing import Any

from arq.constants import expires_extra_ms
from arq.jobs import Job, serialize_job

from core.enqueue import Fence, JobRequest, enqueue_many, enqueue_tick
from core.redis import create_arq_pool, deserialize, serialize


async def _snapshot(redis: Any, queue: str, job_id: str) -> tuple[Any, int, float | None]:
    info = await Job(job_id, redis, _queue_name=queue, _deserializer=deserialize).info()
    return info, await redis.pttl(f"arq:job:{job_id}"), await redis.zscore(queue, job_id)


async def test_batch_enqueue_matches_arq_enqueue_job(metricx_env: Any, redis_client: Any) -> None:
    from core.config import get_settings

    queue = get_settings().queue_name
    ours, theirs = f"ours-{uuid.uuid4().hex[:6]}", f"arq-{uuid.uuid4().hex[:6]}"
    await enqueue_many(
        redis_client, [JobRequest("scheduled_compaction", ours, args=(1,), kwargs={"tick": "t"}, defer_s=60)]
    )
    pool = await create_arq_pool()
    try:
        await pool.enqueue_job("scheduled_compaction", 1, tick="t", _job_id=theirs, _defer_by=60)
    finally:
        await pool.aclose()
    (a, a_ttl, a_score), (b, b_ttl, b_score) = [
        await _snapshot(redis_client, queue, j) for j in (ours, theirs)
    ]
    assert a is not None and b is not None
    assert (a.function, list(a.args), a.kwargs) == (b.function, list(b.args), b.kwargs)
    assert abs(a_ttl - b_ttl) < 2_000 and abs(a_ttl - (expires_extra_ms + 60_000)) < 2_000
    assert a_score is not None and b_score is not None and abs(a_score - b_score) < 2_000
    await redis_client.zrem(queue, ours, theirs)
    await redis_client.delete(f"arq:job:{ours}", f"arq:job:{theirs}")


async def test_batch_payloads_are_byte_for_byte_arqs(metricx_env: Any, redis_client: Any) -> None:
    """A batch packs the bytes around the arguments once per function and kwargs (the fan-out's
    10,000 jobs share them); every stored payload is still exactly what arq's serialize_job writes."""
    queue = f"arq:test-payloads:{uuid.uuid4().hex[:6]}"
    shared = {"mode": "realtime"}
    tag = uuid.uuid4().hex[:6]
    requests = [
        JobRequest("process_sync_job", f"p-{tag}-1", args=("c1", "w1"), kwargs=shared),
        JobRequest("process_sync_job", f"p-{tag}-2", args=("c2", "w2"), kwargs=shared),
        JobRequest("process_sync_job", f"p-{tag}-3", args=("c3", "w3"), kwargs={"mode": "attribution"}),
        JobRequest("scheduled_compaction", f"p-{tag}-4"),
        JobRequest("scheduled_compaction", f"p-{tag}-5", args=(uuid.UUID(int=5), None, 1.5, [1, "x"])),
    ]
    await enqueue_many(redis_client, requests, queue_name=queue)
    for req in requests:
        stored = await redis_client.get(f"arq:job:{req.job_id}")
        expected = serialize_job(
            req.function, req.args, req.kwargs or {}, None, deserialize(stored)["et"], serializer=serialize
        )
        assert stored == expected, req
    await redis_client.delete(queue, *[f"arq:job:{req.job_id}" for req in requests])


async def test_batch_records_the_connections_it_queued(metricx_env: Any, redis_client: Any) -> None:
    """The fan-out's slot record is written in the enqueue's atomic call: a connection whose sync is
    now queued (this job, or one it already had) is in the set; a job id that already ran is not."""
    queue = f"arq:test-record:{uuid.uuid4().hex[:6]}"
    record = f"{queue}:slot"
    tag = uuid.uuid4().hex[:6]
    c1, c2, c3 = (f"{tag}-c{i}" for i in range(1, 4))
    await redis_client.set(f"arq:result:sync:{c3}:realtime:s", b"done")  # this slot's job already ran
    await enqueue_many(
        redis_client, [JobRequest("f", f"sync:{c2}:backfill:1", connection_id=c2)], queue_name=queue
    )
    results = await enqueue_many(
        redis_client,
        [JobRequest("f", f"sync:{c}:realtime:s", connection_id=c) for c in (c1, c2, c3)],
        queue_name=queue,
        record_in=record,
        record_ttl_s=600,
    )
    assert [r["status"] for r in results] == ["enqueued", "already_queued", "already_queued"]
    assert results[1]["job_id"] == f"sync:{c2}:backfill:1"
    assert {m.decode() for m in await redis_client.smembers(record)} == {c1, c2}
    assert 590_000 < await redis_client.pttl(record) <= 600_000
    await redis_client.delete(queue, record, f"arq:result:sync:{c3}:realtime:s")
    await redis_client.delete(
        *[f"arq:job:sync:{c}:realtime:s" for c in (c1, c2)], f"arq:job:sync:{c2}:backfill:1"
    )
    await redis_client.delete(*[f"metricx:sync:active:{c}" for c in (c1, c2, c3)])


async def test_scheduler_tick_is_an_arq_job_with_arqs_expiry(metricx_env: Any, redis_client: Any) -> None:
    queue = f"arq:test-ticks:{uuid.uuid4().hex[:6]}"
    lease = f"{queue}:lease"
    await redis_client.set(lease, "me")
    fence = Fence(lease, "me")
    job_id = f"cron:demo:{uuid.uuid4().hex[:6]}"
    request = JobRequest("scheduled_compaction", job_id, kwargs={"tick": "2026-12-02T00:00:00+00:00"})
    common: dict[str, Any] = {"last_ticks_key": f"{queue}:last", "entry": "demo", "queue_name": queue}
    assert await enqueue_tick(redis_client, fence, tick_ms=1000, request=request, **common) == 1
    assert await enqueue_tick(redis_client, fence, tick_ms=1000, request=request, **common) == 0
    assert (
        await enqueue_tick(redis_client, Fence(lease, "not-me"), tick_ms=2000, request=request, **common)
        == -1
    )
    info, ttl, score = await _snapshot(redis_client, queue, job_id)
    assert info is not None and info.function == "scheduled_compaction" and info.kwargs == request.kwargs
    assert abs(ttl - expires_extra_ms) < 2_000 and score is not None
    await redis_client.delete(queue, lease, f"{queue}:last", f"arq:job:{job_id}")
