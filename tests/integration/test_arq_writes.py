"""Jobs core writes straight into Redis look exactly like arq's own enqueues (keys, expiry, payload)."""

from __future__ import annotations

import uuid
from typing import Any

from arq.constants import expires_extra_ms
from arq.jobs import Job

from core.enqueue import Fence, JobRequest, enqueue_many, enqueue_tick
from core.redis import create_arq_pool, deserialize


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
