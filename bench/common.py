"""What every benchmark shares: servers, a scratch database, paired measurement and its report.

Each benchmark measures metricx and its baseline **interleaved** (metricx, baseline,
metricx, baseline, ...) in the same process, against the same PostgreSQL and Redis,
so that the machine's other load hits both sides alike. It prints every pair's ratio,
then the median and the spread (min-max) of the ratios: never a best-of.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

# Figures of the last run, in print order: (measure, metricx, baseline, ratio, goal).
RESULTS: list[tuple[str, str, str, str, str]] = []


def add_server_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", help="PostgreSQL server URL (a scratch database is created)")
    parser.add_argument("--redis-url", help="Redis URL (scratch keys and queue, cleaned afterwards)")
    parser.add_argument("--data-dir", default=".metricx/bench", help="where embedded servers live")


def servers(args: argparse.Namespace) -> tuple[str, str]:
    """The PostgreSQL server and Redis URLs: the given ones, or embedded servers under data_dir."""
    from core.embedded import embedded_postgres, embedded_redis

    data_dir = Path(args.data_dir)
    pg = args.database_url or embedded_postgres(data_dir / "pg")
    redis = args.redis_url or embedded_redis(data_dir / "redis")[0]
    return pg, redis


@dataclass
class Env:
    server_url: str
    redis_url: str
    database: str = field(default_factory=lambda: f"metricx_bench_{uuid.uuid4().hex[:8]}")

    @property
    def database_url(self) -> str:
        from core.embedded import with_database

        return with_database(self.server_url, self.database)


def setup(args: argparse.Namespace, **settings: str) -> Env:
    """A scratch database (migrated) and this process's settings pointing at it."""
    from core.config import get_settings
    from core.testing.servers import create_database

    server_url, redis_url = servers(args)
    env = Env(server_url, redis_url)
    asyncio.run(create_database(server_url, env.database))
    os.environ.update(
        {
            "DATABASE_URL": env.database_url,
            "REDIS_URL": redis_url,
            "METRICX_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "METRICX_QUEUE_NAME": f"arq:queue:bench:{uuid.uuid4().hex[:8]}",
            "METRICX_LOG_LEVEL": "WARNING",
            "METRICX_RECONCILE_ON_STARTUP": "false",
            "METRICX_FANOUT_SPREAD_S": "0",
            **settings,
        }
    )
    get_settings.cache_clear()
    from core.db.migrate import upgrade
    from core.logging import configure_logging

    configure_logging(force=True)
    upgrade(env.database_url)
    return env


def teardown(env: Env) -> None:
    from core.testing.servers import drop_database

    asyncio.run(drop_database(env.server_url, env.database))


async def reset_db_engine() -> None:
    from core.db.engine import dispose_engine

    await dispose_engine()


def ratio_line(ratios: list[float]) -> str:
    med = statistics.median(ratios)
    return f"median {med:.3g} (spread {min(ratios):.3g}-{max(ratios):.3g}, {len(ratios)} pairs)"


async def paired(
    name: str,
    ours: Callable[[int], Awaitable[float]],
    baseline: Callable[[int], Awaitable[float]],
    rounds: int,
    *,
    unit: str,
    higher_is_better: bool = True,
    goal: str = "",
    ours_label: str = "metricx",
    base_label: str = "baseline",
) -> float:
    """Run ``ours`` and ``baseline`` interleaved ``rounds`` times; print each pair and the median ratio.

    Each callable takes the round number and returns its figure (a rate when
    ``higher_is_better``, else a duration). The ratio is metricx / baseline for rates,
    baseline / metricx for durations: above 1 means metricx is faster.
    """
    print(f"\n== {name}")
    ratios: list[float] = []
    ours_values: list[float] = []
    base_values: list[float] = []
    for round_ in range(rounds):
        # Alternate which side goes first, so warm-up and drift do not favour one side.
        if round_ % 2 == 0:
            a = await ours(round_)
            b = await baseline(round_)
        else:
            b = await baseline(round_)
            a = await ours(round_)
        ours_values.append(a)
        base_values.append(b)
        ratio = a / b if higher_is_better else b / a
        ratios.append(ratio)
        print(
            f"   pair {round_ + 1}: {ours_label} {a:,.4g} {unit}   {base_label} {b:,.4g} {unit}   "
            f"ratio {ratio:.3g}"
        )
    med = statistics.median(ratios)
    print(
        f"   {ours_label} median {statistics.median(ours_values):,.4g} {unit}; {base_label} median "
        f"{statistics.median(base_values):,.4g} {unit}; ratio {ratio_line(ratios)}"
        + (f"; goal {goal}" if goal else "")
    )
    RESULTS.append(
        (
            name,
            f"{statistics.median(ours_values):,.4g} {unit}",
            f"{statistics.median(base_values):,.4g} {unit}",
            ratio_line(ratios),
            goal,
        )
    )
    return med


def record(name: str, ours: str, baseline: str, ratio: str, goal: str) -> None:
    """A figure that is not a pair (e.g. a measured time against a computed bound)."""
    RESULTS.append((name, ours, baseline, ratio, goal))


class Timer:
    def __enter__(self) -> Timer:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.started


def print_summary() -> None:
    if not RESULTS or os.environ.get("BENCH_NO_SUMMARY"):
        return
    print("\n== summary (medians of interleaved pairs)")
    print("| measure | metricx | baseline | ratio | goal |")
    print("|---|---|---|---|---|")
    for row in RESULTS:
        print("| " + " | ".join(row) + " |")


def machine() -> str:
    import platform

    load = os.getloadavg()
    return (
        f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} at start"
    )


INSERT_CONNECTIONS = """
WITH new AS (
    INSERT INTO connections (id, workspace_id, provider, external_account_id, timezone, config,
                             status, sync_status, total_syncs_attempted, total_syncs_succeeded)
    SELECT gen_random_uuid(), :ws, 'bench', 'acct-' || g, 'UTC', '{}'::jsonb, 'active', 'idle', 0, 0
    FROM generate_series(1, :n) AS g
    RETURNING id
)
INSERT INTO credentials (id, connection_id, access_token_enc, updated_at)
SELECT gen_random_uuid(), id, :token, now() FROM new
"""


async def insert_connections(n: int) -> uuid.UUID:
    """A workspace with ``n`` active 'bench' connections, each with an encrypted token; its id."""
    from sqlalchemy import text

    from core.crypto import encrypt
    from core.db.engine import session_scope

    ws = uuid.uuid4()
    async with session_scope() as session:
        await session.execute(text("INSERT INTO workspaces (id, name) VALUES (:ws, 'bench')"), {"ws": ws})
        await session.execute(text(INSERT_CONNECTIONS), {"ws": ws, "n": n, "token": encrypt("bench-token")})
    return ws
