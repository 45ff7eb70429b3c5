"""Rows in and out of metric_snapshots: P3 (ingest), P4 (compaction) and a 30-night growth run.

    python -m bench.storage                     # embedded PostgreSQL + Redis under .metricx/bench
    python -m bench.storage --database-url postgresql://... --redis-url redis://...

P3: rows/s of ``core.sync.upserts.upsert_snapshots`` (one transaction per 5,000-row batch)
against asyncpg's COPY of the same rows into a table with the same columns, indexes
and unique key; also the typed-arrays variant of the upsert (``INSERT ... SELECT FROM unnest``), to show why
the engine COPYs into a staging table instead.

P4: ``core.compaction.compact_all`` over pending days against
``CREATE TABLE AS SELECT DISTINCT ON`` of the same rows (what a rebuild would cost).

Growth: 30 simulated nights; each adds one day of 15-minute snapshots for every
connection and runs the nightly compaction; prints the compaction time and the
latency of a 7-day metrics query as history grows (flat is the goal), beside the
old pending-days query's time (which read the whole table).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from bench import common


async def raw_connection() -> Any:
    import asyncpg

    from core.db.engine import database_url

    return await asyncpg.connect(database_url().replace("postgresql+asyncpg://", "postgresql://"))


async def make_connection(entities: int) -> tuple[uuid.UUID, uuid.UUID, dict[str, uuid.UUID]]:
    from sqlalchemy import text

    from core.db.engine import session_scope
    from core.providers import EntityRecord
    from core.sync.upserts import entity_ids, upsert_entities

    ws, conn = uuid.uuid4(), uuid.uuid4()
    async with session_scope() as session:
        await session.execute(text("INSERT INTO workspaces (id, name) VALUES (:w, 'bench')"), {"w": ws})
        await session.execute(
            text(
                "INSERT INTO connections (id, workspace_id, provider, external_account_id, timezone, "
                "currency, "
                "config, status, sync_status, total_syncs_attempted, total_syncs_succeeded) VALUES "
                "(:c, :w, 'bench', :a, 'UTC', 'USD', '{}'::jsonb, 'active', 'idle', 0, 0)"
            ),
            {"c": conn, "w": ws, "a": f"acct-{conn.hex[:8]}"},
        )
        records = [EntityRecord(level="ad", external_id=f"a{i}") for i in range(entities)]
        await upsert_entities(session, ws, conn, records)
        ids = await entity_ids(session, conn, [("ad", f"a{i}") for i in range(entities)])
    return ws, conn, {ext: eid for (_, ext), eid in ids.items()}


async def p3(rows: int, rounds: int, entities: int = 200, batch: int = 5000) -> None:
    from core.db.engine import session_scope
    from core.providers import MetricRecord
    from core.sync.upserts import upsert_snapshots
    from core.sync.windows import end_of_day

    ws, conn, ids = await make_connection(entities)
    days = max(1, rows // entities)
    now = datetime.now(UTC)
    pg = await raw_connection()
    await pg.execute("DROP TABLE IF EXISTS bench_copy")
    await pg.execute("CREATE TABLE bench_copy (LIKE metric_snapshots INCLUDING ALL)")
    columns = [
        "workspace_id", "connection_id", "entity_id", "metrics_date", "captured_at",
        "spend", "impressions", "clicks", "conversions", "revenue", "currency",
    ]  # fmt: skip

    def records(round_: int) -> list[MetricRecord]:
        first = date(2020, 1, 1) + timedelta(days=round_ * (days + 1))
        return [
            MetricRecord(
                level="ad",
                entity_external_id=f"a{i}",
                metrics_date=first + timedelta(days=d),
                spend=Decimal(i + d),
                impressions=i * 10 + d,
                clicks=i,
                conversions=Decimal(1),
                revenue=Decimal(2),
            )
            for d in range(days)
            for i in range(entities)
        ]

    async def ours(round_: int) -> float:
        recs = records(round_)
        started = time.perf_counter()
        for i in range(0, len(recs), batch):
            async with session_scope() as session:
                await upsert_snapshots(
                    session, ws, conn, recs[i : i + batch], timezone="UTC", currency="USD", now=now
                )
        return len(recs) / (time.perf_counter() - started)

    async def copy(round_: int) -> float:
        recs = records(round_ + 1000)
        await pg.execute("TRUNCATE bench_copy")
        started = time.perf_counter()
        tuples = [
            (
                ws,
                conn,
                ids[r.entity_external_id],
                r.metrics_date,
                end_of_day(r.metrics_date, "UTC"),
                r.spend,
                r.impressions,
                r.clicks,
                r.conversions,
                r.revenue,
                "USD",
            )
            for r in recs
        ]
        for i in range(0, len(tuples), batch):
            async with pg.transaction():
                await pg.copy_records_to_table("bench_copy", records=tuples[i : i + batch], columns=columns)
        return len(recs) / (time.perf_counter() - started)

    async def unnest(round_: int) -> float:
        """The alternative: the rows as typed arrays in one INSERT ... SELECT FROM unnest ... ON CONFLICT."""
        recs = records(round_ + 2000)
        started = time.perf_counter()
        for i in range(0, len(recs), batch):
            chunk = recs[i : i + batch]
            cols: list[list[Any]] = [[] for _ in range(10)]
            for r in chunk:
                row = (
                    "ad",
                    r.entity_external_id,
                    r.metrics_date,
                    end_of_day(r.metrics_date, "UTC"),
                    r.spend,
                    r.impressions,
                    r.clicks,
                    r.conversions,
                    r.revenue,
                    "USD",
                )
                for col, value in zip(cols, row, strict=True):
                    col.append(value)
            async with pg.transaction():
                await pg.execute(UNNEST, ws, conn, *cols)
        return len(recs) / (time.perf_counter() - started)

    try:
        await common.paired(
            f"P3 snapshot ingest, {days * entities:,} rows per round in {batch:,}-row transactions",
            ours,
            copy,
            rounds,
            unit="rows/s",
            goal=">= 0.7",
            ours_label="upsert_snapshots",
            base_label="asyncpg COPY",
        )
        await common.paired(
            "P3b the engine's COPY-into-staging upsert vs typed arrays in INSERT ... SELECT FROM unnest",
            ours,
            unnest,
            rounds,
            unit="rows/s",
            goal="> 1 keeps COPY",
            ours_label="upsert_snapshots",
            base_label="unnest arrays",
        )
    finally:
        await pg.execute("DROP TABLE IF EXISTS bench_copy")
        await pg.close()
        await common.reset_db_engine()


UNNEST = """
INSERT INTO metric_snapshots AS s (workspace_id, connection_id, entity_id, metrics_date, captured_at,
                                   spend, impressions, clicks, conversions, revenue, currency)
SELECT $1, $2, e.id, r.d, r.at, r.spend, r.impressions, r.clicks, r.conversions, r.revenue, r.currency
FROM unnest($3::text[], $4::text[], $5::date[], $6::timestamptz[], $7::numeric[], $8::bigint[],
            $9::bigint[], $10::numeric[], $11::numeric[], $12::text[])
     AS r(level, ext, d, at, spend, impressions, clicks, conversions, revenue, currency)
JOIN entities e ON e.connection_id = $2 AND e.level = r.level AND e.external_id = r.ext
ON CONFLICT ON CONSTRAINT uq_snapshots_natural DO UPDATE SET spend = excluded.spend,
    impressions = excluded.impressions, clicks = excluded.clicks, conversions = excluded.conversions,
    revenue = excluded.revenue, currency = excluded.currency
"""

SLOTS = """
INSERT INTO metric_snapshots (workspace_id, connection_id, entity_id, metrics_date, captured_at,
                              spend, impressions, clicks, conversions, revenue, currency)
SELECT e.workspace_id, e.connection_id, e.id, d::date,
       d + g * interval '15 minutes', g, g * 100, g * 10, g / 4.0, g * 2, 'USD'
FROM entities e
CROSS JOIN generate_series($1::timestamptz, $2::timestamptz, interval '1 day') AS d
CROSS JOIN generate_series(0, 96) AS g
WHERE e.connection_id = ANY($3::uuid[])
"""

# The pending-days query compaction ran before the watermark: it read and sorted the whole table.
OLD_PENDING = """
SELECT s.connection_id, s.metrics_date, c.timezone, count(*) AS rows
FROM metric_snapshots s JOIN connections c ON c.id = s.connection_id
WHERE s.metrics_date < (now() AT TIME ZONE c.timezone)::date - 1
GROUP BY s.connection_id, s.metrics_date, c.timezone
HAVING count(*) > count(DISTINCT (s.entity_id, date_trunc('hour', s.captured_at, c.timezone)))
"""

LATEST_7_DAYS = """
SELECT DISTINCT ON (entity_id, metrics_date) entity_id, metrics_date, spend, impressions
FROM metric_snapshots
WHERE connection_id = $1 AND metrics_date BETWEEN $2 AND $3
ORDER BY entity_id, metrics_date, captured_at DESC
"""


async def fleet(connections: int, entities: int) -> list[uuid.UUID]:
    conns = []
    for _ in range(connections):
        _, conn, _ = await make_connection(entities)
        conns.append(conn)
    return conns


async def p4(connections: int, entities: int, days: int, rounds: int) -> None:
    from core.compaction import compact_all

    pg = await raw_connection()
    conns = await fleet(connections, entities)
    today = datetime.now(UTC).date()
    first = datetime.combine(today - timedelta(days=days + 2), datetime.min.time(), UTC)
    last = first + timedelta(days=days - 1)

    async def fresh() -> int:
        await pg.execute("TRUNCATE metric_snapshots")
        await pg.execute("UPDATE connections SET compacted_through = NULL")
        await pg.execute(SLOTS, first, last, conns)
        await pg.execute("ANALYZE metric_snapshots")
        return int(await pg.fetchval("SELECT count(*) FROM metric_snapshots"))

    sizes: list[tuple[int, int]] = []

    async def ours(round_: int) -> float:
        before = await fresh()
        started = time.perf_counter()
        stats = await compact_all()
        elapsed = time.perf_counter() - started
        sizes.append((before, stats["rows_after"] + (before - stats["rows_before"])))
        return elapsed

    async def rebuild(round_: int) -> float:
        if not sizes or round_ % 2 == 0:
            await fresh()
        started = time.perf_counter()
        await pg.execute(
            "CREATE TABLE bench_ctas AS SELECT DISTINCT ON "
            "(entity_id, metrics_date, date_trunc('hour', captured_at, 'UTC')) * FROM metric_snapshots "
            "ORDER BY entity_id, metrics_date, date_trunc('hour', captured_at, 'UTC'), "
            "captured_at DESC, id DESC"
        )
        elapsed = time.perf_counter() - started
        await pg.execute("DROP TABLE bench_ctas")
        return elapsed

    try:
        await common.paired(
            f"P4 compaction, {connections} connections x {entities} entities x {days} days "
            "of 15-minute slots",
            ours,
            rebuild,
            rounds,
            unit="s",
            higher_is_better=False,
            goal=">= 0.8",
            ours_label="compact_all",
            base_label="CREATE TABLE AS SELECT DISTINCT ON",
        )
        print(f"   rows before -> after: {sizes[0][0]:,} -> {sizes[0][1]:,}")
    finally:
        await pg.execute("TRUNCATE metric_snapshots")
        await pg.close()
        await common.reset_db_engine()


async def growth(connections: int, entities: int, nights: int) -> None:
    """Simulated nights: one more day for every connection, then the nightly compaction."""
    from core.compaction import compact_all

    pg = await raw_connection()
    await pg.execute("TRUNCATE metric_snapshots")
    await pg.execute("TRUNCATE connections, workspaces, metric_snapshots CASCADE")
    conns = await fleet(connections, entities)
    start = datetime.now(UTC).date() - timedelta(days=nights + 40)
    print(f"\n== Growth: {nights} simulated nights, {connections} connections x {entities} entities")
    print("   night  rows stored  compaction s  7-day query ms  old pending-days query s")
    compaction: list[float] = []
    query: list[float] = []
    old: list[float] = []
    try:
        for night in range(nights):
            day = start + timedelta(days=night)
            at = datetime.combine(day, datetime.min.time(), UTC)
            await pg.execute(SLOTS, at, at, conns)
            await pg.execute("ANALYZE metric_snapshots")
            now = at + timedelta(days=2, hours=1)  # the night after the day became "before yesterday"
            started = time.perf_counter()
            stats = await compact_all(now=now)
            compaction.append(time.perf_counter() - started)
            assert stats["days"] == connections, stats
            started = time.perf_counter()
            for conn in conns[:10]:
                await pg.fetch(LATEST_7_DAYS, conn, day - timedelta(days=6), day)
            query.append((time.perf_counter() - started) / min(10, len(conns)) * 1000)
            started = time.perf_counter()
            await pg.fetch(OLD_PENDING)
            old.append(time.perf_counter() - started)
            if night % 5 == 0 or night == nights - 1:
                stored = await pg.fetchval("SELECT count(*) FROM metric_snapshots")
                print(
                    f"   {night + 1:5d}  {stored:11,d}  {compaction[-1]:12.3f}  {query[-1]:14.2f}  "
                    f"{old[-1]:10.3f}"
                )
        # The 7-day query's window is full from night 7 on: compare the nights after it.
        warm = min(7, max(0, nights - 2))
        k = max(1, (nights - warm) // 4)
        first_c, first_q, first_o = compaction[warm:][:k], query[warm:][:k], old[warm:][:k]
        flat_c = statistics.median(compaction[-k:]) / statistics.median(first_c)
        flat_q = statistics.median(query[-k:]) / statistics.median(first_q)
        flat_o = statistics.median(old[-k:]) / statistics.median(first_o)
        print(
            f"   last {k} nights / nights {warm + 1}-{warm + k} (medians): compaction {flat_c:.2f}x, "
            "7-day query "
            f"{flat_q:.2f}x, the old pending-days query {flat_o:.2f}x"
        )
        common.record(
            f"Growth: compaction and 7-day query over {nights} nights",
            f"compaction {flat_c:.2f}x, query {flat_q:.2f}x",
            f"old pending scan {flat_o:.2f}x",
            "last nights / first nights",
            "~1.0 (flat)",
        )
    finally:
        await pg.execute("TRUNCATE metric_snapshots")
        await pg.close()
        await common.reset_db_engine()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_server_args(parser)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--p3-rows", type=int, default=20_000)
    parser.add_argument("--p4-connections", type=int, default=20, help="0 skips P4")
    parser.add_argument("--p4-entities", type=int, default=10)
    parser.add_argument("--p4-days", type=int, default=30)
    parser.add_argument("--growth-nights", type=int, default=30, help="0 skips the growth run")
    parser.add_argument("--growth-connections", type=int, default=50)
    parser.add_argument("--growth-entities", type=int, default=10)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    env = common.setup(args)
    try:
        if args.p3_rows:
            asyncio.run(p3(args.p3_rows, args.rounds))
        if args.p4_connections:
            asyncio.run(p4(args.p4_connections, args.p4_entities, args.p4_days, args.rounds))
        if args.growth_nights:
            asyncio.run(growth(args.growth_connections, args.growth_entities, args.growth_nights))
    finally:
        common.teardown(env)
    common.print_summary()


if __name__ == "__main__":
    main()
