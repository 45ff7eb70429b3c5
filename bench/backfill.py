"""P5: peak RSS of one backfill sync in its own worker process, an account 10x larger vs the base one.

    python -m bench.backfill                    # embedded PostgreSQL + Redis under .metricx/bench
    python -m bench.backfill --ads 50 --database-url postgresql://... --redis-url redis://...

Each measurement is a fresh process (``python -m bench.backfill --child ADS``) that runs one
90-day backfill of the bench provider (``ADS`` ads, so 90 x ADS rows in 5,000-row batches)
through an arq worker and prints its peak RSS. Sizes alternate (base, 10x, base, 10x, ...);
the ratio is peak(10x) / peak(base): streaming batches keeps it near 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys

from bench import common


async def child(ads: int) -> None:
    from bench.provider import BenchProvider, install
    from bench.worker import (
        clear_connections,
        completed_runs,
        in_process_worker,
        quiet_startup,
    )
    from core.enqueue import enqueue_many, sync_request
    from core.providers import SyncMode
    from core.redis import create_arq_pool
    from core.worker import WorkerSettings

    install(BenchProvider(ads=ads))
    await clear_connections()
    ws = await common.insert_connections(1)
    from sqlalchemy import text

    from core.db.engine import session_scope

    async with session_scope() as session:
        cid = str(await session.scalar(text("SELECT id FROM connections WHERE workspace_id = :w"), {"w": ws}))
    redis = await create_arq_pool()
    await enqueue_many(redis, [sync_request(cid, str(ws), SyncMode.backfill, slot="p5")])
    worker = in_process_worker(WorkerSettings.functions, on_startup=quiet_startup)
    await worker.async_run()
    await worker.close()
    await redis.aclose()
    assert await completed_runs(":p5") == 1
    async with session_scope() as session:
        rows = int(await session.scalar(text("SELECT count(*) FROM metric_snapshots")) or 0)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"ads": ads, "rows": rows, "peak_mb": peak_mb}))


def measure(ads: int) -> float:
    out = subprocess.run(
        [sys.executable, "-m", "bench.backfill", "--child", str(ads)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    print(f"   {result['ads']} ads: {result['rows']:,} rows, peak RSS {result['peak_mb']:.1f} MB")
    return float(result["peak_mb"])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    common.add_server_args(parser)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ads", type=int, default=50, help="ads of the base account (the large one has 10x)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child is not None:
        asyncio.run(child(args.child))
        return
    env = common.setup(args)

    async def large(round_: int) -> float:
        return measure(args.ads * 10)

    async def base(round_: int) -> float:
        return measure(args.ads)

    try:
        asyncio.run(
            common.paired(
                f"P5 backfill peak RSS, account 10x larger ({args.ads * 10} vs {args.ads} ads, 90 days)",
                large,
                base,
                args.rounds,
                unit="MB",
                higher_is_better=True,  # ratio = peak(10x) / peak(base): lower is better here
                goal="<= 1.1 (peak 10x / peak base)",
                ours_label="10x account",
                base_label="base account",
            )
        )
    finally:
        common.teardown(env)
    common.print_summary()


if __name__ == "__main__":
    main()
