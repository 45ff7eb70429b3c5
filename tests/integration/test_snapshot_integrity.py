"""metric_snapshots has no foreign keys (migration 0011): hard deletes still take every snapshot with
them, a write never lands under another tenant, and a write racing a delete leaves nothing behind."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from alembic import command
from sqlalchemy.exc import IntegrityError

from core.db.engine import session_scope
from core.db.migrate import alembic_config, upgrade_async
from core.db.models import Connection
from core.providers import Credentials, EntityRecord, MetricRecord
from core.services import create_connection, create_workspace, delete_connection, delete_workspace
from core.sync.upserts import SnapshotOwnerMissing, upsert_entities, upsert_snapshots
from core.testing.servers import create_database, drop_database
from tests.conftest import fetch_one

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
DAYS = [date(2026, 3, 1) + timedelta(days=d) for d in range(3)]
ADS = ("ad-1", "ad-2")

COUNTS = """
SELECT (SELECT count(*) FROM metric_snapshots WHERE connection_id = :c) AS by_connection,
       (SELECT count(*) FROM metric_snapshots WHERE workspace_id = :w) AS by_workspace,
       (SELECT count(*) FROM metric_snapshots s
        WHERE s.connection_id = :c AND NOT EXISTS (SELECT 1 FROM entities e WHERE e.id = s.entity_id))
       AS without_entity
"""


def records(spend: int = 1, days: list[date] = DAYS) -> list[MetricRecord]:
    return [
        MetricRecord(level="ad", entity_external_id=ad, metrics_date=day, spend=Decimal(spend), clicks=spend)
        for day in days
        for ad in ADS
    ]


async def account(workspace_id: uuid.UUID | None = None) -> tuple[uuid.UUID, uuid.UUID]:
    """A connection (in a new workspace unless one is given) with two ads and three days stored."""
    async with session_scope() as session:
        ws = workspace_id or (await create_workspace(session, f"integrity-{uuid.uuid4().hex[:6]}")).id
        conn = await create_connection(
            session, ws, "testprovider", f"acct-{uuid.uuid4().hex[:8]}", Credentials(access_token="t")
        )
        cid = conn.id
        await upsert_entities(session, ws, cid, [EntityRecord(level="ad", external_id=ad) for ad in ADS])
    await write(ws, cid)
    return ws, cid


async def write(ws: uuid.UUID, cid: uuid.UUID, spend: int = 1) -> int:
    async with session_scope() as session:
        return await upsert_snapshots(
            session, ws, cid, records(spend), timezone="UTC", currency="USD", now=NOW
        )


async def counts(ws: uuid.UUID, cid: uuid.UUID) -> tuple[int, int, int]:
    row = await fetch_one(COUNTS, c=cid, w=ws)
    return row.by_connection, row.by_workspace, row.without_entity


async def test_deleting_a_workspace_deletes_its_snapshots_and_no_other_tenants(metricx_env: Any) -> None:
    ws, cid = await account()
    _, second = await account(ws)
    other_ws, other = await account()
    assert await counts(ws, cid) == (6, 12, 0)

    async with session_scope() as session:
        assert await delete_workspace(session, ws)
    for conn in (cid, second):
        assert await counts(ws, conn) == (0, 0, 0)
    assert (await fetch_one("SELECT count(*) AS n FROM entities WHERE workspace_id = :w", w=ws)).n == 0
    assert await counts(other_ws, other) == (6, 6, 0)  # the other tenant keeps everything
    async with session_scope() as session:
        assert not await delete_workspace(session, ws)  # gone already


async def test_deleting_a_connection_with_its_data_deletes_only_its_snapshots(metricx_env: Any) -> None:
    ws, kept = await account()
    _, removed = await account(ws)
    async with session_scope() as session:
        for cid, keep in ((kept, True), (removed, False)):
            conn = await session.get(Connection, cid)
            assert conn is not None
            await delete_connection(session, conn, keep_data=keep)
    assert await counts(ws, removed) == (0, 6, 0)  # the 6 left are the kept connection's
    assert await counts(ws, kept) == (6, 6, 0)


async def test_a_batch_never_lands_under_another_tenant_or_a_deleted_connection(metricx_env: Any) -> None:
    ws, cid = await account()
    intruder, _ = await account()
    with pytest.raises(SnapshotOwnerMissing):
        await write(intruder, cid, spend=99)  # another workspace's id with this connection
    assert (
        await fetch_one("SELECT max(spend) AS m FROM metric_snapshots WHERE connection_id = :c", c=cid)
    ).m == 1
    assert await counts(intruder, cid) == (6, 6, 0)  # the intruder's own account only

    async with session_scope() as session:
        await delete_workspace(session, ws)
    with pytest.raises((SnapshotOwnerMissing, IntegrityError)):  # its entities went with it
        await write(ws, cid)
    assert await counts(ws, cid) == (0, 0, 0)


async def test_a_write_in_flight_when_its_connection_is_deleted_leaves_nothing_behind(
    metricx_env: Any,
) -> None:
    ws, cid = await account()
    async with session_scope() as writer:
        # New rows (later days): no row the delete could wait on, only the connection's lock.
        later = records(2, [day + timedelta(days=3) for day in DAYS])
        await upsert_snapshots(writer, ws, cid, later, timezone="UTC", currency="USD", now=NOW)

        async def delete() -> None:
            async with session_scope() as session:
                conn = await session.get(Connection, cid)
                assert conn is not None
                await delete_connection(session, conn, keep_data=False)

        deleting = asyncio.create_task(delete())
        # The delete waits for the writer's lock on the connection row (it must not finish first).
        pg = await asyncpg.connect(os.environ["DATABASE_URL"])
        try:
            for _ in range(500):
                waiting = await pg.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                if waiting or deleting.done():
                    break
                await asyncio.sleep(0.01)
        finally:
            await pg.close()
        assert not deleting.done(), "the delete did not wait for the write in flight"
    await deleting  # the writer committed; the delete then removed its rows too
    assert await counts(ws, cid) == (0, 0, 0)


async def test_the_migration_drops_the_foreign_keys_and_its_downgrade_restores_them(metricx_env: Any) -> None:
    server = os.environ["DATABASE_URL"]
    url = await create_database(server)
    name = url.rsplit("/", 1)[1]
    fks = "SELECT count(*) FROM pg_constraint WHERE conrelid = 'metric_snapshots'::regclass AND contype = 'f'"
    try:
        await upgrade_async(url, "0011_snapshot_integrity_in_app")
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval(fks) == 0
            ws, cid, eid = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
            await conn.execute("INSERT INTO workspaces (id, name) VALUES ($1, 'w')", ws)
            await conn.execute(
                "INSERT INTO connections (id, workspace_id, provider, external_account_id, timezone, config, "
                "status, sync_status, total_syncs_attempted, total_syncs_succeeded) "
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
            insert = (
                "INSERT INTO metric_snapshots "
                "(workspace_id, connection_id, entity_id, metrics_date, captured_at) "
                "VALUES ($1, $2, $3, current_date, now())"
            )
            await conn.execute(insert, ws, cid, eid)
            await conn.execute(insert, ws, uuid.uuid4(), eid)  # an orphan a raw delete left behind
        finally:
            await conn.close()

        await asyncio.to_thread(command.downgrade, alembic_config(url), "0010_connections_hot")
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval(fks) == 3
            assert await conn.fetchval("SELECT count(*) FROM metric_snapshots") == 1  # the orphan went
            await conn.execute("DELETE FROM workspaces WHERE id = $1", ws)  # cascades again
            assert await conn.fetchval("SELECT count(*) FROM metric_snapshots") == 0
        finally:
            await conn.close()
    finally:
        await drop_database(server, name)
