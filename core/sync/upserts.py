"""Set-based upserts of provider batches: one INSERT ... ON CONFLICT per batch, never a row at a time."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import Entity, MetricSnapshot
from core.providers import EntityRecord, MetricRecord
from core.sync.windows import captured_at

EntityKey = tuple[str, str]  # (level, external_id)

# asyncpg allows 32767 bind parameters per statement.
MAX_PARAMS = 30000


def _chunks(rows: Sequence[dict[str, Any]], width: int) -> Iterable[Sequence[dict[str, Any]]]:
    size = max(1, MAX_PARAMS // max(1, width))
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


async def entity_ids(
    session: AsyncSession, connection_id: uuid.UUID, keys: Iterable[EntityKey]
) -> dict[EntityKey, uuid.UUID]:
    """Ids of the connection's entities with the given (level, external_id) keys."""
    wanted = list(set(keys))
    found: dict[EntityKey, uuid.UUID] = {}
    for i in range(0, len(wanted), 5000):
        rows = await session.execute(
            select(Entity.level, Entity.external_id, Entity.id).where(
                Entity.connection_id == connection_id,
                tuple_(Entity.level, Entity.external_id).in_(wanted[i : i + 5000]),
            )
        )
        found.update({(level, ext): eid for level, ext, eid in rows})
    return found


async def upsert_entities(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    connection_id: uuid.UUID,
    records: Sequence[EntityRecord],
) -> int:
    """Insert or update one batch of entities; parents must be in this or an earlier batch."""
    if not records:
        return 0
    parents = {(r.parent_level, r.parent_external_id) for r in records if r.parent_external_id}
    parent_ids = await entity_ids(session, connection_id, [(str(lv), str(ext)) for lv, ext in parents])
    rows: dict[EntityKey, dict[str, Any]] = {}
    for r in records:
        parent = (
            parent_ids.get((str(r.parent_level), str(r.parent_external_id))) if r.parent_external_id else None
        )
        rows[(r.level, r.external_id)] = {
            "id": uuid.uuid4(),
            "workspace_id": workspace_id,
            "connection_id": connection_id,
            "level": r.level,
            "external_id": r.external_id,
            "parent_id": parent,
            "name": r.name,
            "status": r.status,
            "raw": dict(r.raw),
        }
    values = list(rows.values())
    for chunk in _chunks(values, 9):
        stmt = insert(Entity).values(list(chunk))
        excluded = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            constraint="uq_entities_natural",
            set_={
                "parent_id": func.coalesce(excluded.parent_id, Entity.parent_id),
                "name": func.coalesce(excluded.name, Entity.name),
                "status": func.coalesce(excluded.status, Entity.status),
                "raw": excluded.raw,
                "updated_at": func.now(),
            },
        )
        await session.execute(stmt)
    return len(values)


async def _ensure_entities(
    session: AsyncSession, workspace_id: uuid.UUID, connection_id: uuid.UUID, keys: set[EntityKey]
) -> dict[EntityKey, uuid.UUID]:
    ids = await entity_ids(session, connection_id, keys)
    missing = keys - ids.keys()
    if missing:
        # Metrics for an entity the entity sync did not list (e.g. deleted meanwhile): keep the
        # numbers, with a placeholder entity that a later entity sync fills in.
        await upsert_entities(
            session,
            workspace_id,
            connection_id,
            [EntityRecord(level=lv, external_id=ext) for lv, ext in missing],
        )
        ids.update(await entity_ids(session, connection_id, missing))
    return ids


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
    ids = await _ensure_entities(
        session, workspace_id, connection_id, {(r.level, r.entity_external_id) for r in records}
    )
    rows: dict[tuple[uuid.UUID, Any, datetime], dict[str, Any]] = {}
    for r in records:
        entity_id = ids[(r.level, r.entity_external_id)]
        at = captured_at(r.metrics_date, timezone, now)
        rows[(entity_id, r.metrics_date, at)] = {
            "workspace_id": workspace_id,
            "connection_id": connection_id,
            "entity_id": entity_id,
            "metrics_date": r.metrics_date,
            "captured_at": at,
            "spend": r.spend,
            "impressions": r.impressions,
            "clicks": r.clicks,
            "conversions": r.conversions,
            "revenue": r.revenue,
            "currency": r.currency or currency,
        }
    values = list(rows.values())
    for chunk in _chunks(values, 11):
        stmt = insert(MetricSnapshot).values(list(chunk))
        excluded = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            constraint="uq_snapshots_natural",
            set_={
                "spend": excluded.spend,
                "impressions": excluded.impressions,
                "clicks": excluded.clicks,
                "conversions": excluded.conversions,
                "revenue": excluded.revenue,
                "currency": excluded.currency,
            },
        )
        await session.execute(stmt)
    return len(values)
