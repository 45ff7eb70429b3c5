"""Fan-out throughput: N sync jobs through ``core.fanout.fan_out`` vs a loop of arq's ``enqueue_job``.

    python -m bench.fanout                     # embedded PostgreSQL + Redis under .metricx/bench
    python -m bench.fanout -n 50000 --database-url postgresql://... --redis-url redis://...

Both paths run in the same process against the same Redis. The fan-out path is
the whole realtime fan-out (page connections, decrypt and check tokens, claim
them in SQL, pipelined Lua enqueues, record the slot); the plain loop only
enqueues. The database is a scratch one created on the given server and dropped
afterwards; the queue is a scratch one, emptied afterwards. Prints rates and
the median and spread of the paired ratios (interleaved rounds, never a best-of); it asserts
nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench import common


class BenchProvider:
    """Just enough of a provider for the fan-out: a name, capabilities and an offline token check."""

    name = "bench"
    display_name = "Bench"

    def __init__(self) -> None:
        from core.providers import Capabilities

        self.capabilities = Capabilities(levels=("campaign",))

    def check_credentials(self, credentials: Any) -> None:
        from core.errors import AuthError

        if not credentials.access_token:
            raise AuthError("no token")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-n", type=int, default=10_000, help="sync jobs per path (default 10,000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved pairs")
    common.add_server_args(parser)
    return parser.parse_args(argv)


async def clear_queue(redis: Any, queue: str) -> None:
    for pattern in ("arq:job:sync:*", "metricx:fanout:*", "metricx:sync:active:*"):
        batch: list[bytes] = []
        async for key in redis.scan_iter(pattern, count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                await redis.delete(*batch)
                batch = []
        if batch:
            await redis.delete(*batch)
    await redis.delete(queue)


async def reset(redis: Any, queue: str) -> None:
    """Back to the start: idle connections, an empty queue."""
    from sqlalchemy import text

    from core.db.engine import session_scope

    async with session_scope() as session:
        await session.execute(text("UPDATE connections SET sync_status = 'idle', current_job_id = NULL"))
    await clear_queue(redis, queue)


async def run_fanout(redis: Any, n: int, round_: int) -> float:
    from core.config import get_settings
    from core.fanout import fan_out
    from core.plugins import Registry
    from core.providers import SyncMode

    registry = Registry()
    registry.providers["bench"] = BenchProvider()  # type: ignore[assignment]
    ctx = {"settings": get_settings(), "registry": registry, "redis": redis}
    tick = f"2030-01-01T10:{15 * round_ % 60:02d}:00+00:00"
    started = time.perf_counter()
    stats = await fan_out(ctx, SyncMode.realtime, tick)
    elapsed = time.perf_counter() - started
    queued = await redis.zcard(get_settings().queue_name)
    assert stats["enqueued"] == n == queued, (stats, queued)
    return elapsed


async def run_plain_loop(redis: Any, n: int, round_: int) -> float:
    from sqlalchemy import text

    from core.config import get_settings
    from core.db.engine import session_scope

    async with session_scope() as session:
        rows = (await session.execute(text("SELECT id, workspace_id FROM connections"))).all()
    started = time.perf_counter()
    for cid, ws in rows:
        await redis.enqueue_job(
            "process_sync_job", str(cid), str(ws), False, False, _job_id=f"sync:{cid}:realtime:plain{round_}"
        )
    elapsed = time.perf_counter() - started
    queued = await redis.zcard(get_settings().queue_name)
    assert queued == n, queued
    return elapsed


async def run_enqueue_step(redis: Any, n: int, round_: int) -> float:
    """Only the fan-out's enqueue step: the same N requests through ``enqueue_many``."""
    from sqlalchemy import text

    from core.config import get_settings
    from core.db.engine import session_scope
    from core.enqueue import enqueue_many, sync_request
    from core.providers import SyncMode

    async with session_scope() as session:
        rows = (await session.execute(text("SELECT id, workspace_id FROM connections"))).all()
    started = time.perf_counter()
    requests = [sync_request(str(c), str(w), SyncMode.realtime, slot=f"step{round_}") for c, w in rows]
    results = await enqueue_many(redis, requests)
    elapsed = time.perf_counter() - started
    assert (
        sum(r["status"] == "enqueued" for r in results) == n == await redis.zcard(get_settings().queue_name)
    )
    return elapsed


async def bench(n: int, rounds: int) -> None:
    from core.config import get_settings
    from core.redis import create_arq_pool
    from core.worker import freeze_startup_heap

    await common.insert_connections(n)
    redis = await create_arq_pool()
    queue = get_settings().queue_name
    freeze_startup_heap()  # what a worker's startup does before it runs any fan-out (both sides gain)

    def rate(run: Any) -> Any:
        async def measured(round_: int) -> float:
            await reset(redis, queue)
            return n / await run(redis, n, round_)

        return measured

    try:
        await common.paired(
            f"P1 realtime fan-out, {n:,} connections",
            rate(run_fanout),
            rate(run_plain_loop),
            rounds,
            unit="jobs/s",
            goal=">= 10",
            ours_label="fan_out",
            base_label="loop of arq enqueue_job",
        )
        await common.paired(
            f"P1b the fan-out's enqueue step alone, {n:,} jobs",
            rate(run_enqueue_step),
            rate(run_plain_loop),
            rounds,
            unit="jobs/s",
            goal="(report)",
            ours_label="enqueue_many",
            base_label="loop of arq enqueue_job",
        )
        await reset(redis, queue)
    finally:
        await redis.aclose()
        await common.reset_db_engine()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    env = common.setup(args)
    try:
        asyncio.run(bench(args.n, args.rounds))
    finally:
        common.teardown(env)
    common.print_summary()


if __name__ == "__main__":
    main()
