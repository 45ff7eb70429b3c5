"""Syncs through real arq workers: P2 (throughput), P6 (one realtime cycle) and the 10,000 fleet.

    python -m bench.worker                      # embedded PostgreSQL + Redis under .metricx/bench
    python -m bench.worker --database-url postgresql://... --redis-url redis://... --fleet 10000

P2: syncs/s of a zero-latency one-ad provider through an arq worker running metricx's
jobs (``core.worker.WorkerSettings``), against raw arq no-op jobs through a worker with
the same ``max_jobs`` and ``poll_delay``, both in this process, interleaved.

P6 / fleet: ``--workers`` worker processes x ``max_jobs`` slots sync every connection
once after one realtime fan-out; the provider answers each API call after
``--latency-ms``. The lower bound is (API calls x latency) / slots: the time the calls
alone take with every slot busy. The ratio is measured time / bound (1.0 is perfect).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench import common


async def clear_connections() -> None:
    from sqlalchemy import text

    from core.db.engine import session_scope

    async with session_scope() as session:
        await session.execute(text("TRUNCATE connections, workspaces, metric_snapshots CASCADE"))


async def reset(redis: Any, ws: uuid.UUID | None = None) -> None:
    """Idle connections, no active-sync markers, an empty queue: ready for another round."""
    from sqlalchemy import text

    from core.config import get_settings
    from core.db.engine import session_scope

    async with session_scope() as session:
        await session.execute(
            text(
                "UPDATE connections SET sync_status = 'idle', current_job_id = NULL WHERE provider = 'bench'"
            )
        )
    for pattern in ("arq:job:*", "arq:result:*", "metricx:*"):
        batch = [key async for key in redis.scan_iter(pattern, count=5000)]
        for i in range(0, len(batch), 5000):
            await redis.delete(*batch[i : i + 5000])
    await redis.delete(get_settings().queue_name)


async def completed_runs(job_suffix: str) -> int:
    from sqlalchemy import text

    from core.db.engine import session_scope

    async with session_scope() as session:
        return int(
            await session.scalar(
                text("SELECT count(*) FROM sync_runs WHERE status = 'complete' AND job_id LIKE :p"),
                {"p": f"%{job_suffix}"},
            )
            or 0
        )


def in_process_worker(functions: Any, *, on_startup: Any = None, **overrides: Any) -> Any:
    from arq.worker import Worker, get_kwargs

    from core.config import get_settings
    from core.worker import WorkerSettings

    kwargs = get_kwargs(WorkerSettings)
    # WorkerSettings read the settings when core.worker was first imported, which may have been an
    # earlier module of the same `python -m bench` run with its own scratch queue.
    kwargs.update(queue_name=get_settings().queue_name)
    kwargs.update(functions=functions, burst=True, handle_signals=False, on_startup=on_startup, **overrides)
    if on_startup is None:
        kwargs.pop("on_startup")
        kwargs.pop("on_shutdown")
    return Worker(**kwargs)


async def quiet_startup(ctx: dict[str, Any]) -> None:
    from core.worker import startup

    with contextlib.redirect_stdout(io.StringIO()):
        await startup(ctx)


async def noop(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> None:
    return None


async def p2(n: int, rounds: int) -> None:
    from arq.worker import func

    from bench.provider import BenchProvider, install
    from core.config import get_settings
    from core.enqueue import JobRequest, enqueue_many, sync_request
    from core.providers import SyncMode
    from core.redis import create_arq_pool
    from core.worker import WorkerSettings

    install(BenchProvider(latency_s=0.0, ads=1))
    settings = get_settings()
    ws = await common.insert_connections(n)
    redis = await create_arq_pool()
    from sqlalchemy import text

    from core.db.engine import session_scope

    async with session_scope() as session:
        ids = [
            str(r[0])
            for r in (
                await session.execute(text("SELECT id FROM connections WHERE workspace_id = :w"), {"w": ws})
            )
        ]

    async def ours(round_: int) -> float:
        await reset(redis)
        slot = f"p2r{round_}"
        await enqueue_many(redis, [sync_request(c, str(ws), SyncMode.realtime, slot=slot) for c in ids])
        worker = in_process_worker(WorkerSettings.functions, on_startup=quiet_startup)
        started = time.perf_counter()
        await worker.async_run()
        elapsed = time.perf_counter() - started
        await worker.close()
        done = await completed_runs(f":{slot}")
        assert done == n, (done, n)
        return n / elapsed

    async def baseline(round_: int) -> float:
        await reset(redis)
        await enqueue_many(redis, [JobRequest("noop", f"noop:{round_}:{i}") for i in range(n)])
        worker = in_process_worker([func(noop, name="noop")])
        started = time.perf_counter()
        await worker.async_run()
        elapsed = time.perf_counter() - started
        await worker.close()
        assert worker.jobs_complete == n, worker.jobs_complete
        return n / elapsed

    try:
        await common.paired(
            f"P2 syncs/s, zero-latency one-ad provider, one worker (max_jobs={settings.max_jobs}, "
            f"poll_delay={settings.worker_poll_delay_s}s), {n} jobs",
            ours,
            baseline,
            rounds,
            unit="jobs/s",
            goal=">= 0.5",
            base_label="raw arq no-op",
        )
    finally:
        await reset(redis)
        await redis.aclose()
        await common.reset_db_engine()


def start_workers(
    count: int, latency_ms: float, max_jobs: int, log_dir: Path
) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "METRICX_MAX_JOBS": str(max_jobs), "BENCH_LATENCY_MS": str(latency_ms)}
    procs = []
    for i in range(count):
        log = open(log_dir / f"bench-worker-{i}.log", "wb")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "bench.worker_proc"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        )
    return procs


async def wait_listening(log_dir: Path, count: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready = sum(
            "Listening" in (log_dir / f"bench-worker-{i}.log").read_text(errors="replace")
            for i in range(count)
        )
        if ready == count:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"workers did not start; see {log_dir}")


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


async def cycle(
    n: int, rounds: int, workers: int, max_jobs: int, latency_ms: float, label: str, goal: str
) -> None:
    """One realtime fan-out of ``n`` connections, synced by worker processes; time vs the bound."""
    from bench.provider import BenchProvider, install
    from core.config import get_settings
    from core.fanout import fan_out
    from core.plugins import get_registry
    from core.providers import SyncMode
    from core.redis import create_arq_pool

    install(BenchProvider())  # the fan-out's offline token check; the workers have their own
    await clear_connections()
    await common.insert_connections(n)
    redis = await create_arq_pool()
    log_dir = Path(os.environ.get("BENCH_LOG_DIR", ".metricx/bench"))
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = start_workers(workers, latency_ms, max_jobs, log_dir)
    print(f"\n== {label}")
    ratios: list[float] = []
    times: list[float] = []
    bounds: list[float] = []
    try:
        await wait_listening(log_dir, workers)
        for round_ in range(rounds):
            await reset(redis)
            tick = f"2030-01-0{round_ + 1}T10:15:00+00:00"
            ctx = {"settings": get_settings(), "registry": get_registry(), "redis": redis}
            started = time.perf_counter()
            stats = await fan_out(ctx, SyncMode.realtime, tick)
            assert stats["enqueued"] == n, stats
            slot = f":{tick[:4]}{tick[5:7]}{tick[8:10]}1015"
            while (done := await completed_runs(slot)) < n:
                await asyncio.sleep(0.1)
                if time.perf_counter() - started > 3600:
                    raise RuntimeError(f"only {done} of {n} syncs finished")
            elapsed = time.perf_counter() - started
            calls = await api_calls(slot)
            bound = calls * latency_ms / 1000 / (workers * max_jobs)
            ratios.append(elapsed / bound)
            times.append(elapsed)
            bounds.append(bound)
            print(
                f"   round {round_ + 1}: {elapsed:.1f} s for {n:,} syncs ({n / elapsed:,.0f}/s), "
                f"{calls:,} API calls, "
                f"bound {bound:.1f} s, ratio {elapsed / bound:.3g}"
            )
    finally:
        stop_workers(procs)
        await reset(redis)
        await redis.aclose()
        await common.reset_db_engine()
    import statistics

    print(f"   time / bound: {common.ratio_line(ratios)} (lower is better; goal {goal})")
    common.record(
        label,
        f"{statistics.median(times):.1f} s",
        f"bound {statistics.median(bounds):.1f} s",
        common.ratio_line(ratios) + " (time / bound)",
        goal,
    )


async def api_calls(slot: str) -> int:
    from sqlalchemy import text

    from core.db.engine import session_scope

    async with session_scope() as session:
        return int(
            await session.scalar(
                text("SELECT coalesce(sum(api_calls), 0) FROM sync_runs WHERE job_id LIKE :p"),
                {"p": f"%{slot}"},
            )
            or 0
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_server_args(parser)
    parser.add_argument("--p2-jobs", type=int, default=500, help="jobs per P2 round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved pairs (P2) / cycles (P6)")
    parser.add_argument("--p6", type=int, default=1000, help="connections of the P6 cycle (0: skip)")
    parser.add_argument("--fleet", type=int, default=0, help="connections of the fleet cycle (0: skip)")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="per API call, P6")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-jobs", type=int, default=10)
    parser.add_argument("--fleet-latency-ms", type=float, default=50.0)
    parser.add_argument("--fleet-max-jobs", type=int, default=100)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    env = common.setup(args)
    try:
        if args.p2_jobs:
            asyncio.run(p2(args.p2_jobs, args.rounds))
        if args.p6:
            asyncio.run(
                cycle(
                    args.p6,
                    max(1, args.rounds - 1),
                    args.workers,
                    args.max_jobs,
                    args.latency_ms,
                    f"P6 one realtime cycle, {args.p6:,} connections, {args.latency_ms:g} ms per API call, "
                    f"{args.workers} workers x {args.max_jobs}",
                    "<= 1.15",
                )
            )
        if args.fleet:
            asyncio.run(
                cycle(
                    args.fleet,
                    1,
                    args.workers,
                    args.fleet_max_jobs,
                    args.fleet_latency_ms,
                    f"Fleet: one realtime cycle, {args.fleet:,} connections, "
                    f"{args.fleet_latency_ms:g} ms per "
                    f"API call, {args.workers} workers x {args.fleet_max_jobs}",
                    "flat (report)",
                )
            )
    finally:
        common.teardown(env)
    common.print_summary()


if __name__ == "__main__":
    main()
