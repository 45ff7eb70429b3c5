"""Peak memory of a Google Ads 90-day backfill as the account's ads grow 10x (issue 14, item 7).

    python bench/google_backfill_memory.py                 # 300 ads vs 3,000 ads, 90 days
    python bench/google_backfill_memory.py --ads-per-group 9 --slice-days 30

The Google simulator runs as its own process (its memory is not measured). For each size a
fresh Python process runs ``GoogleAdsProvider.fetch_metrics`` over the backfill window and reports
the peak of Python allocations during the fetch (``tracemalloc``) and its max RSS. searchStream
answers are parsed incrementally, one batch (<= 10,000 rows) at a time, so the peak should not
follow the account's size: the target is a ratio of at most 1.1x. Slices are 45 days long so the
smaller account already fills a 10,000-row batch per answer (with a slice smaller than one batch,
the peak is one slice and grows with it until batches fill). Prints the ratio; asserts only that
the larger account really returned ~10x the rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

BASE_ID, BIG_ID = "6000000001", "6000000002"


async def _fetch(url: str, customer_id: str, days: int, slice_days: int) -> dict[str, int]:
    import fakeredis
    from cryptography.fernet import Fernet
    from metricx_google import GoogleAdsProvider, GoogleSettings
    from metricx_google.simulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_REFRESH_TOKEN
    from pydantic import SecretStr

    from core import AccountRef, Credentials, SyncMode, SyncWindow, provider_context
    from core.testing.harness import Settings

    settings = GoogleSettings(
        base_url=url,
        token_url=f"{url}/token",
        client_id=DEFAULT_CLIENT_ID,
        client_secret=SecretStr(DEFAULT_CLIENT_SECRET),
        metrics_slice_days=slice_days,
        request_timeout_s=600,
    )
    provider = GoogleAdsProvider(settings)
    core_settings = Settings(encryption_keys=SecretStr(Fernet.generate_key().decode()))
    account = AccountRef("bench", "bench", customer_id, currency="USD")
    today = datetime.now(UTC).date()
    window = SyncWindow(SyncMode.backfill, today - timedelta(days=days - 1), today, "America/New_York")
    rows = 0
    async with httpx.AsyncClient(timeout=600) as client:
        ctx = provider_context(
            redis=fakeredis.aioredis.FakeRedis(),
            client=client,
            provider="google",
            account=customer_id,
            settings=core_settings,
        )
        creds = Credentials(refresh_token=DEFAULT_REFRESH_TOKEN)
        await provider.validate_token(ctx, account, creds)
        tracemalloc.start()
        async for batch in provider.fetch_metrics(ctx, account, creds, window):
            rows += len(batch)
            del batch
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return {"rows": rows, "peak_bytes": peak, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def _child(args: argparse.Namespace) -> None:
    print(json.dumps(asyncio.run(_fetch(args.url, args.customer, args.days, args.slice_days))))


def _measure(url: str, customer: str, args: argparse.Namespace) -> dict[str, int]:
    command = [sys.executable, __file__, "--child", "--url", url, "--customer", customer]
    command += ["--days", str(args.days), "--slice-days", str(args.slice_days)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--campaigns", type=int, default=5)
    parser.add_argument("--groups", type=int, default=10, help="ad groups per campaign")
    parser.add_argument(
        "--ads-per-group", type=int, default=9, help="the smaller account's; the larger has 10x"
    )
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--slice-days", type=int, default=45)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--customer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    from core.testing.simulator_process import simulator_process

    log = Path(tempfile.mkdtemp()) / "google-sim.log"
    with simulator_process("metricx_google.simulator.app:create_app", log_path=log, factory=True) as sim:
        for customer, ads in ((BASE_ID, args.ads_per_group), (BIG_ID, 10 * args.ads_per_group)):
            spec = {
                "customer_id": customer,
                "campaigns": args.campaigns,
                "ad_groups_per_campaign": args.groups,
                "ads_per_ad_group": ads,
                "seed": 7,
            }
            httpx.post(f"{sim.url}/_sim/accounts", json=spec, timeout=30).raise_for_status()
        base = _measure(sim.url, BASE_ID, args)
        big = _measure(sim.url, BIG_ID, args)
    ads = args.campaigns * args.groups * args.ads_per_group
    rows_ratio = big["rows"] / base["rows"]
    assert rows_ratio > 8, f"the larger account should return ~10x the rows, got {rows_ratio:.1f}x"
    print(f"{args.days}-day backfill, {args.slice_days}-day searchStream slices")
    print(f"{'ads':>8} {'rows':>10} {'peak (tracemalloc)':>20} {'max RSS':>12}")
    for n, r in ((ads, base), (10 * ads, big)):
        print(
            f"{n:>8,} {r['rows']:>10,} {r['peak_bytes'] / 2**20:>17.1f} MB {r['maxrss_kb'] / 1024:>9.1f} MB"
        )
    print(
        f"rows grew {rows_ratio:.1f}x; peak memory grew {big['peak_bytes'] / base['peak_bytes']:.2f}x "
        f"(target <= 1.1x); max RSS grew {big['maxrss_kb'] / base['maxrss_kb']:.2f}x"
    )


if __name__ == "__main__":
    main()
