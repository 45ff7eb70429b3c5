"""Set-based upserts of provider batches: typed arrays through asyncpg, one statement per table.

Each batch costs a fixed number of statements whatever its size: the rows travel
as typed arrays (asyncpg's binary protocol, one bind parameter per column) and one
``INSERT ... SELECT FROM unnest(...) ON CONFLICT`` writes them. No SQLAlchemy
statement is built or compiled per batch (that was 85-90% of the ingest time);
the SQL goes to asyncpg through the session's connection, inside its transaction:
one transaction per batch, as before.

Semantics kept from the ORM version: re-running a batch overwrites, never adds;
within one batch the last record of a key wins; an entity's parent is linked
when it is in the same or an earlier batch; a new entity without a name keeps the
stored one; a metric for an entity the entity sync did not list gets a
placeholder entity that a later entity sync fills in. Snapshots are keyed by
their capture time, so an older capture never overwrites a newer one.

Snapshots are COPYed (binary) into a temporary staging table, then written in one
``INSERT ... SELECT ... ON CONFLICT`` (``bench.storage`` P3b: faster than typed arrays here).
``metric_snapshots`` has no foreign keys (migration 0011, the DESIGN note there): this is its
only writer, and it takes the workspace and connection from the connection row (locked
``FOR KEY SHARE`` once per batch, as a key check would per row) and each entity from a join on
that connection; a batch whose connection is gone or is another workspace's raises
:class:`SnapshotOwnerMissing` and the transaction writes nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import PermanentError
from core.providers import EntityRecord, MetricRecord
from core.sync.windows import captured_at

EntityKey = tuple[str, str]  # (level, external_id)

_ENTITY_IDS = """
SELECT e.level, e.external_id, e.id
FROM entities e
JOIN unnest($2::text[], $3::text[]) AS k(level, external_id)
  ON e.level = k.level AND e.external_id = k.external_id
WHERE e.connection_id = $1
"""

# Parents are looked up among the entities stored before this statement (as the ORM version did).
_UPSERT_ENTITIES = """
INSERT INTO entities AS e (id, workspace_id, connection_id, level, external_id, parent_id, name, status, raw)
SELECT gen_random_uuid(), $1, $2, r.level, r.external_id, p.id, r.name, r.status, r.raw::jsonb
FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])
     AS r(level, external_id, parent_level, parent_external_id, name, status, raw)
LEFT JOIN entities p
  ON p.connection_id = $2 AND p.level = r.parent_level AND p.external_id = r.parent_external_id
ON CONFLICT ON CONSTRAINT uq_entities_natural DO UPDATE SET
    parent_id = coalesce(excluded.parent_id, e.parent_id),
    name = coalesce(excluded.name, e.name),
    status = coalesce(excluded.status, e.status),
    raw = excluded.raw,
    updated_at = now()
"""

# Children whose parent arrived in the same batch (the INSERT above could not see it yet).
_LINK_PARENTS = """
UPDATE entities c SET parent_id = p.id
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[])
     AS r(level, external_id, parent_level, parent_external_id)
JOIN entities p
  ON p.connection_id = $1 AND p.level = r.parent_level AND p.external_id = r.parent_external_id
WHERE c.connection_id = $1 AND c.level = r.level AND c.external_id = r.external_id
  AND c.parent_id IS DISTINCT FROM p.id
"""

# Placeholders for metrics whose entity is not stored yet; an existing entity is left alone.
_ENSURE_ENTITIES = """
INSERT INTO entities (id, workspace_id, connection_id, level, external_id)
SELECT gen_random_uuid(), $1, $2, k.level, k.external_id
FROM unnest($3::text[], $4::text[]) AS k(level, external_id)
ON CONFLICT ON CONSTRAINT uq_entities_natural DO NOTHING
"""

# The batch is COPYed (binary) into a per-connection temporary table emptied at commit, then
# written in one statement; entities are resolved in it (it sees the placeholders inserted before).
_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS metricx_stage_snapshots (
    level text, external_id text, metrics_date date, captured_at timestamptz, spend numeric,
    impressions bigint, clicks bigint, conversions numeric, revenue numeric, currency text, extra jsonb
) ON COMMIT DELETE ROWS
"""
_STAGE_COLUMNS = (
    "level", "external_id", "metrics_date", "captured_at", "spend",
    "impressions", "clicks", "conversions", "revenue", "currency", "extra",
)  # fmt: skip

# metric_snapshots has no foreign keys (migration 0011): its ids come from stored rows. The
# connection row is locked FOR KEY SHARE (the lock a foreign key check would take, once per batch):
# a hard delete of the connection waits for this transaction, then deletes what it wrote. The
# workspace is the connection's own, and each entity is joined on the connection.
_UPSERT_SNAPSHOTS = """
WITH owner AS (
    SELECT id, workspace_id FROM connections WHERE id = $2 AND workspace_id = $1 FOR KEY SHARE
)
INSERT INTO metric_snapshots AS s (
    workspace_id, connection_id, entity_id, metrics_date, captured_at,
    spend, impressions, clicks, conversions, revenue, currency, extra
)
SELECT o.workspace_id, o.id, e.id, r.metrics_date, r.captured_at,
       r.spend, r.impressions, r.clicks, r.conversions, r.revenue, r.currency, r.extra
FROM owner o
JOIN entities e ON e.connection_id = o.id
JOIN metricx_stage_snapshots r ON e.level = r.level AND e.external_id = r.external_id
ON CONFLICT ON CONSTRAINT uq_snapshots_natural DO UPDATE SET
    spend = excluded.spend,
    impressions = excluded.impressions,
    clicks = excluded.clicks,
    conversions = excluded.conversions,
    revenue = excluded.revenue,
    currency = excluded.currency,
    extra = excluded.extra
"""


class SnapshotOwnerMissing(PermanentError):
    """A snapshot batch names a connection that is gone, or that is not the given workspace's."""


async def _execute(session: AsyncSession, sql: str, *params: Any) -> Any:
    # exec_driver_sql: no statement is built or compiled, the arrays go to asyncpg as they are,
    # and SQLAlchemy still runs it in the session's transaction and invalidates a dead connection.
    conn = await session.connection()
    return await conn.exec_driver_sql(sql, params)


async def _driver(session: AsyncSession) -> Any:
    """The asyncpg connection under the session (for COPY), inside its open transaction."""
    raw = await (await session.connection()).get_raw_connection()
    return raw.driver_connection


def _columns(rows: Iterable[Sequence[Any]], width: int) -> list[list[Any]]:
    cols: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for col, value in zip(cols, row, strict=True):
            col.append(value)
    return cols


async def entity_ids(
    session: AsyncSession, connection_id: uuid.UUID, keys: Iterable[EntityKey]
) -> dict[EntityKey, uuid.UUID]:
    """Ids of the connection's entities with the given (level, external_id) keys."""
    wanted = list(set(keys))
    if not wanted:
        return {}
    levels, externals = _columns(wanted, 2)
    rows = await _execute(session, _ENTITY_IDS, connection_id, levels, externals)
    return {(level, ext): eid for level, ext, eid in rows}


async def upsert_entities(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    connection_id: uuid.UUID,
    records: Sequence[EntityRecord],
) -> int:
    """Insert or update one batch of entities; a parent must be in this or an earlier batch."""
    if not records:
        return 0
    rows: dict[EntityKey, tuple[Any, ...]] = {}
    for r in records:
        rows[(r.level, r.external_id)] = (
            r.level,
            r.external_id,
            r.parent_level if r.parent_external_id else None,
            r.parent_external_id or None,
            r.name,
            r.status,
            json.dumps(dict(r.raw)),
        )
    await _execute(session, _UPSERT_ENTITIES, workspace_id, connection_id, *_columns(rows.values(), 7))
    in_batch = [row for row in rows.values() if row[3] is not None and (row[2], row[3]) in rows]
    if in_batch:
        await _execute(session, _LINK_PARENTS, connection_id, *_columns((row[:4] for row in in_batch), 4))
    return len(rows)


async def upsert_snapshots(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    connection_id: uuid.UUID,
    records: Sequence[MetricRecord],
    *,
    timezone: str,
    currency: str | None,
    now: datetime,
) -> int:
    """Write one batch of daily totals at their snapshot times; re-running overwrites, never adds."""
    if not records:
        return 0
    rows: dict[tuple[str, str, Any, datetime], tuple[Any, ...]] = {}
    captures: dict[Any, datetime] = {}
    for r in records:
        at = captures.get(r.metrics_date)
        if at is None:
            at = captures[r.metrics_date] = captured_at(r.metrics_date, timezone, now)
        rows[(r.level, r.entity_external_id, r.metrics_date, at)] = (
            r.level,
            r.entity_external_id,
            r.metrics_date,
            at,
            r.spend,
            r.impressions,
            r.clicks,
            r.conversions,
            r.revenue,
            r.currency or currency,
            r.extra_json(),
        )
    levels, externals = _columns({(k[0], k[1]) for k in rows}, 2)
    # The first statement (through SQLAlchemy) opens the transaction the COPY then joins.
    await _execute(session, _ENSURE_ENTITIES, workspace_id, connection_id, levels, externals)
    await _execute(session, _STAGE)
    pg = await _driver(session)
    await pg.copy_records_to_table("metricx_stage_snapshots", records=rows.values(), columns=_STAGE_COLUMNS)
    written = (await _execute(session, _UPSERT_SNAPSHOTS, workspace_id, connection_id)).rowcount
    if written != len(rows):
        # Every entity exists (ensured above), so only a missing owner drops rows: nothing is kept.
        raise SnapshotOwnerMissing(
            f"connection {connection_id} of workspace {workspace_id} is gone or not that workspace's: "
            f"{len(rows) - written} of {len(rows)} snapshots not written"
        )
    return len(rows)
