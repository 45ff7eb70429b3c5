"""Compaction: 15-minute snapshots become hourly ones for days before yesterday.

Values are cumulative, so each (entity, day, local hour) keeps its **latest**
snapshot, never a column-wise MAX (that would hide downward corrections). Hours
are the account's local hours (Asia/Kolkata's start at :30 UTC). One day per
transaction, set-based, idempotent; days missed earlier are found and caught up.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import structlog
from sqlalchemy import text

from core.db.engine import session_scope

log = structlog.get_logger(__name__).bind(component="SCHEDULER")

# Days before the account's yesterday that still hold more than one snapshot in some local hour.
_PENDING = text(
    """
    SELECT s.connection_id, s.metrics_date, c.timezone
    FROM metric_snapshots s JOIN connections c ON c.id = s.connection_id
    WHERE s.metrics_date < (now() AT TIME ZONE c.timezone)::date - 1
    GROUP BY s.connection_id, s.metrics_date, c.timezone
    HAVING count(*) > count(DISTINCT (s.entity_id, date_trunc('hour', s.captured_at AT TIME ZONE c.timezone)))
    ORDER BY s.metrics_date
    """
)

_COMPACT_DAY = text(
    """
    DELETE FROM metric_snapshots s
    USING (
        SELECT id, row_number() OVER (
            PARTITION BY entity_id, date_trunc('hour', captured_at AT TIME ZONE :tz)
            ORDER BY captured_at DESC
        ) AS rank
        FROM metric_snapshots
        WHERE connection_id = :connection_id AND metrics_date = :day
    ) ranked
    WHERE s.id = ranked.id AND ranked.rank > 1
    """
)


async def compact_day(connection_id: uuid.UUID, day: date, timezone: str) -> int:
    """Compact one connection's day in one transaction; returns the rows removed."""
    async with session_scope() as session:
        result = await session.execute(
            _COMPACT_DAY, {"connection_id": connection_id, "day": day, "tz": timezone}
        )
    return int(getattr(result, "rowcount", 0) or 0)


async def _count() -> int:
    async with session_scope() as session:
        return int((await session.execute(text("SELECT count(*) FROM metric_snapshots"))).scalar_one())


async def compact_all() -> dict[str, Any]:
    """Compact every pending day of every connection; report rows before and after."""
    before = await _count()
    async with session_scope() as session:
        pending = (await session.execute(_PENDING)).all()
    removed = 0
    for connection_id, day, timezone in pending:
        removed += await compact_day(connection_id, day, timezone)
    after = await _count()
    stats = {"days": len(pending), "rows_before": before, "rows_after": after, "rows_removed": removed}
    log.info("compaction_finished", **stats)
    return stats
