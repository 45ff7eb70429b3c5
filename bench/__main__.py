"""Every benchmark in one run: ``python -m bench`` (embedded servers) or with given URLs.

    python -m bench
    python -m bench --database-url postgresql://postgres@127.0.0.1:5432/postgres \\
        --redis-url redis://127.0.0.1:6379/2
    python -m bench --quick                       # smaller sizes, a couple of minutes

Runs P1-P7, the 10,000-connection fleet cycle, the 30-night growth of
metric_snapshots and the Shopify bulk backfill's memory, then prints one table of every ratio
(medians of interleaved pairs) and the machine it ran on: 6 to 14 minutes on a 2-core machine shared
with other work, most of it the fleet cycle, which is bound by the workers' CPU (``--fleet 0`` skips it).
"""

from __future__ import annotations

import argparse
import os
import time

from bench import api, backfill, common, fanout, shopify_bulk_memory, storage, worker


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    common.add_server_args(parser)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument(
        "--fleet",
        type=int,
        default=10_000,
        help="connections of the fleet cycle (0 skips it; it is CPU-bound)",
    )
    args = parser.parse_args()
    server = []
    for flag, value in (("--database-url", args.database_url), ("--redis-url", args.redis_url)):
        if value:
            server += [flag, value]
    server += ["--data-dir", args.data_dir]
    os.environ["BENCH_NO_SUMMARY"] = "1"
    started = time.monotonic()
    print(common.machine())
    if args.quick:
        fanout.main([*server, "-n", "2000", "--rounds", "2"])
        worker.main([*server, "--p2-jobs", "100", "--rounds", "2", "--p6", "200", "--latency-ms", "50"])
        storage.main([*server, "--rounds", "2", "--p4-connections", "5", "--growth-nights", "10"])
        api.main([*server, "--rounds", "2", "--seconds", "2"])
        backfill.main([*server, "--rounds", "1", "--ads", "20"])
        shopify_bulk_memory.main([*server, "--quick"])
    else:
        fanout.main([*server, "-n", "10000", "--rounds", "3"])
        worker.main(
            [*server, "--p2-jobs", "300", "--rounds", "3", "--p6", "1000", "--fleet", str(args.fleet)]
        )
        storage.main([*server, "--rounds", "3"])
        api.main([*server, "--rounds", "3"])
        backfill.main([*server, "--rounds", "2"])
        shopify_bulk_memory.main([*server])
    os.environ.pop("BENCH_NO_SUMMARY")
    common.print_summary()
    print(f"\n{common.machine()}; the run took {(time.monotonic() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
