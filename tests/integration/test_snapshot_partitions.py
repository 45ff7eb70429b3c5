"""metric_snapshots by month: the migration keeps every stored row, and the coming months get partitions."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import date
from typing import Any

import asyncpg
from alembic import command

from core.db.migrate import alembic_config, upgrade_async
from core.partitions import ensure_partitions, partition_name
from core.testing.servers import create_database, drop_database

IN_DEFAULT = "SELECT count(*) FROM metric_snapshots_default WHERE metrics_date >= $1"


async def _seed(conn: asyncpg.Connection, days: list[date]) -> uuid.UUID:
    ws, cid, eid = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await conn.execute("INSERT INTO workspaces (id, name) VALUES ($1, 'w')", ws)
    await conn.execute(
        "INSERT INTO connections (id, workspace_id, provider, external_account_id, timezone, config, status, "
        "sync_status, total_syncs_attempted, total_syncs_succeeded) "
        "VALUES ($1, $2, 'testprovider', 'a', 'UTC', '{}', 'active', 'idle', 0, 0)",
        cid,
        ws,
    )
    await conn.execute(
        "INSERT INTO entities (id, workspace_id, connection_id, level, external_id) "
        "VALUES ($1, $2, $3, 'ad', 'a1')",
        eid,
        ws,
        cid,
    )
    for day in days:
        await conn.execute(
            "INSERT INTO metric_snapshots (workspace_id, connection_id, entity_id, metrics_date, "
            "captured_at, spend, clicks) VALUES ($1, $2, $3, $4, $4::date + interval '1 day', 1.5, 7)",
            ws,
            cid,
            eid,
            day,
        )
    return ws


async def _rows(conn: asyncpg.Connection) -> list[tuple[Any, ...]]:
    return [
        tuple(r)
        for r in await conn.fetch("SELECT id, metrics_date, spend, clicks FROM metric_snapshots ORDER BY id")
    ]


async def test_the_migration_partitions_stored_snapshots_in_place_and_back(metricx_env: Any) -> None:
    server = os.environ["DATABASE_URL"]
    url = await create_database(server)
    name = url.rsplit("/", 1)[1]
    try:
        await upgrade_async(url, "0007_coverage_unavailable")
        conn = await asyncpg.connect(url)
        try:
            today = await conn.fetchval("SELECT current_date")
            days = [date(2001, 5, 4), date(today.year, today.month, 1), today]
            await _seed(conn, days)
            before = await _rows(conn)
        finally:
            await conn.close()

        await upgrade_async(url, "0008_snapshot_partitions")
        conn = await asyncpg.connect(url)
        try:
            assert await _rows(conn) == before  # every row, same ids and values
            kind = await conn.fetchval("SELECT relkind FROM pg_class WHERE relname = 'metric_snapshots'")
            assert kind == b"p" or kind == "p"
            # This month's rows are in this month's partition; a date long ago in the DEFAULT one.
            this_month = partition_name(date(today.year, today.month, 1))
            assert await conn.fetchval(f"SELECT count(*) FROM {this_month}") == 2
            assert await conn.fetchval("SELECT count(*) FROM metric_snapshots_default") == 1
            # New ids keep counting after the copied ones; the natural key still refuses a duplicate.
            await conn.execute(
                "INSERT INTO metric_snapshots "
                "(workspace_id, connection_id, entity_id, metrics_date, captured_at) "
                "SELECT workspace_id, connection_id, entity_id, metrics_date, "
                "captured_at + interval '1 hour' FROM metric_snapshots WHERE metrics_date = $1 "
                "ON CONFLICT ON CONSTRAINT uq_snapshots_natural DO NOTHING",
                today,
            )
            assert await conn.fetchval("SELECT max(id) FROM metric_snapshots") > max(r[0] for r in before)
            after = await _rows(conn)
        finally:
            await conn.close()

        await upgrade_async(url, "0008_snapshot_partitions")  # nothing to do twice
        await asyncio.to_thread(command.downgrade, alembic_config(url), "0007_coverage_unavailable")
        conn = await asyncpg.connect(url)
        try:
            assert await _rows(conn) == after
            kind = await conn.fetchval("SELECT relkind FROM pg_class WHERE relname = 'metric_snapshots'")
            assert kind in (b"r", "r")
        finally:
            await conn.close()
    finally:
        await drop_database(server, name)


async def test_coming_months_get_partitions_and_rows_waiting_in_default_move_into_them(
    metricx_env: Any,
) -> None:
    url = os.environ["DATABASE_URL"]
    conn = await asyncpg.connect(url)
    far = date(2091, 3, 1)  # a month no partition covers yet: the DEFAULT partition takes it
    try:
        ws = await _seed(conn, [far, date(2091, 3, 20)])
        assert await conn.fetchval(IN_DEFAULT, far) == 2
    finally:
        await conn.close()

    created = await ensure_partitions(today=date(2091, 2, 10))
    assert {partition_name(date(2091, m, 1)) for m in (2, 3, 4)} <= set(created)
    assert partition_name(date(2091, 5, 1)) not in created and len(created) == 27  # 24 back, 2 ahead
    assert await ensure_partitions(today=date(2091, 2, 10)) == []  # idempotent

    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval(f"SELECT count(*) FROM {partition_name(far)}") == 2
        assert await conn.fetchval(IN_DEFAULT, far) == 0
        await conn.execute("DELETE FROM metric_snapshots WHERE workspace_id = $1", ws)  # no cascade (0011)
        await conn.execute("DELETE FROM workspaces WHERE id = $1", ws)  # other tests count connections
        for name in created:
            await conn.execute(f"DROP TABLE {name}")
    finally:
        await conn.close()
