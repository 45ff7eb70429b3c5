"""Shopify bulk backfill peak RSS: a 90-day backfill of a store 10x larger (50,000 vs 5,000 orders).

    python -m bench.shopify_bulk_memory                 # 5,000 vs 50,000 orders, 90 days
    python -m bench.shopify_bulk_memory --quick         # 1,000 vs 10,000 orders
    python -m bench.shopify_bulk_memory --orders 2000 --rounds 2

The Shopify simulator runs as its own process (its memory is not measured), with a Plus store's
cost bucket. Each measurement is a fresh Python process that runs the backfill's windows (30-day
slices, newest first, as the sync engine cuts them) through ``ShopifyProvider.fetch_metrics``:
each window is one bulk operation whose JSONL result is streamed and reassembled one order at a
time, so the peak should not follow the store's size (goal: at most 1.1-1.2x). Prints the peak
RSS and the peak of Python allocations (``tracemalloc``) of each size; asserts that every order
of the larger store was read by bulk operations and that none was read by a paged query.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from bench import common

TIMEZONE = "America/New_York"
SLICE_DAYS = 30


async def _backfill(url: str, redis_url: str, domain: str, token: str, days: int) -> dict[str, Any]:
    from cryptography.fernet import Fernet
    from metricx_shopify.provider import ShopifyProvider
    from metricx_shopify.settings import ShopifySettings
    from pydantic import SecretStr
    from redis.asyncio import Redis

    from core import AccountRef, Credentials, SyncMode, SyncWindow, provider_context
    from core.testing.harness import Settings

    provider = ShopifyProvider(ShopifySettings(base_url=url, bulk_poll_s=0.2, request_timeout_s=600))
    core_settings = Settings(encryption_keys=SecretStr(Fernet.generate_key().decode()))
    account = AccountRef("bench", "bench", domain, timezone=TIMEZONE, currency="USD")
    credentials = Credentials(access_token=token)
    today = datetime.now(ZoneInfo(TIMEZONE)).date()
    start = today - timedelta(days=days - 1)
    records = 0
    started = time.perf_counter()
    redis = Redis.from_url(redis_url)
    async with httpx.AsyncClient(timeout=600) as client:
        ctx = provider_context(
            redis=redis,
            client=client,
            provider="shopify",
            account=domain,
            settings=core_settings,
        )
        tracemalloc.start()
        end = today
        while end >= start:  # newest slice first, as the engine backfills
            first = max(start, end - timedelta(days=SLICE_DAYS - 1))
            window = SyncWindow(SyncMode.backfill, first, end, TIMEZONE)
            async for batch in provider.fetch_metrics(ctx, account, credentials, window):
                records += len(batch)
                del batch
            end = first - timedelta(days=1)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    await redis.aclose()
    return {
        "records": records,
        "seconds": time.perf_counter() - started,
        "peak_bytes": peak,
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def _stats(url: str) -> dict[str, int]:
    stats: dict[str, int] = httpx.get(f"{url}/_sim/stats", timeout=30).json()["stats"]
    return stats


def measure(url: str, redis_url: str, shop: dict[str, str], orders: int, days: int) -> float:
    """One backfill of the shop in a fresh process; its peak RSS (MB)."""
    before = _stats(url)
    command = [sys.executable, "-m", "bench.shopify_bulk_memory", "--child", "--url", url]
    command += ["--redis-url", redis_url]
    command += ["--domain", shop["domain"], "--token", shop["token"], "--days", str(days)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the backfill process failed:\n{done.stderr[-3000:]}")
    result = json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])
    after = _stats(url)
    operations = after.get("bulk_operations", 0) - before.get("bulk_operations", 0)
    paged = after.get("list_orders", 0) - before.get("list_orders", 0)
    assert operations >= 1 and paged == 0, (operations, paged)  # bulk operations only
    peak_mb = result["maxrss_kb"] / 1024
    print(
        f"   {orders:,} orders: {operations} bulk operations, {result['records']:,} day records in "
        f"{result['seconds']:.1f} s; peak RSS {peak_mb:.1f} MB, "
        f"peak Python allocations {result['peak_bytes'] / 2**20:.1f} MB"
    )
    return float(peak_mb)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    common.add_server_args(parser)
    parser.add_argument("--orders", type=int, default=5000, help="the smaller store's (the larger has 10x)")
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="1,000 vs 10,000 orders")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--domain", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        backfill = _backfill(args.url, args.redis_url, args.domain, args.token, args.days)
        print(json.dumps(asyncio.run(backfill)))
        return
    from core.embedded import embedded_redis
    from core.testing.simulator_process import simulator_process

    # the shared rate limiter's Redis (a few scratch keys); no database is needed
    redis_url = args.redis_url or embedded_redis(Path(args.data_dir) / "redis")[0]

    small = 1000 if args.quick else args.orders
    log = Path(tempfile.mkdtemp()) / "shopify-sim.log"
    factory = "metricx_shopify.simulator:create_plus_app"
    with simulator_process(factory, log_path=log, factory=True, timeout_s=60) as sim:
        shops = {}
        for orders in (small, 10 * small):
            spec = {
                "domain": f"bench-{orders}.myshopify.com",
                "seed": 5,
                "products": 50,
                "customers": max(50, orders // 20),
                "orders": orders,
                "days": args.days,
                "timezone": TIMEZONE,
            }
            shops[orders] = httpx.post(f"{sim.url}/_sim/shops", json=spec, timeout=120).json()

        async def large(round_: int) -> float:
            return measure(sim.url, redis_url, shops[10 * small], 10 * small, args.days)

        async def base(round_: int) -> float:
            return measure(sim.url, redis_url, shops[small], small, args.days)

        scratch = _limiter_keys(redis_url)
        asyncio.run(
            common.paired(
                f"Shopify bulk backfill peak RSS, store 10x larger ({10 * small:,} vs {small:,} orders, "
                f"{args.days} days)",
                large,
                base,
                args.rounds,
                unit="MB",
                higher_is_better=True,  # ratio = peak(10x) / peak(base): lower is better here
                goal="<= 1.1-1.2 (peak 10x / peak base)",
                ours_label="10x store",
                base_label="base store",
            )
        )
        _drop_keys(redis_url, _limiter_keys(redis_url) - scratch)
    common.print_summary()


def _limiter_keys(redis_url: str) -> set[bytes]:
    from redis import Redis

    with Redis.from_url(redis_url) as redis:
        return set(redis.scan_iter(match="metricx:rl:shopify:*"))


def _drop_keys(redis_url: str, keys: set[bytes]) -> None:
    """The rate limiter's scratch keys this run made."""
    from redis import Redis

    if keys:
        with Redis.from_url(redis_url) as redis:
            redis.delete(*keys)


if __name__ == "__main__":
    main()
