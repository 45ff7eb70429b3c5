"""Compaction: 15-minute snapshots become hourly ones for days before yesterday.

Values are cumulative, so each (entity, day, local hour) keeps its **latest**
snapshot, never a column-wise MAX (that would hide a platform's downward
correction). The kept row is the original one, so ``metrics_date``, currency
and values stay exactly as synced; the day's final row (at the local midnight
ending the day) is the only one in its hour and always survives.

Hours are the account's local hours: ``date_trunc('hour', captured_at, tz)``
gives Asia/Kolkata hours starting at :30 UTC and keeps the two 01:00 hours of a
DST fall-back apart. One (connection, day) per transaction, set-based and
idempotent; every day still holding more than one snapshot in some hour is
found again on the next run, so missed days are caught up.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import TypedDict

import structlog
from sqlalchemy import text

from core.db.engine import session_scope
from core.infra import infra_error

log = structlog.get_logger(__name__, component="SCHEDULER")

# Days before the account's yesterday that still hold more than one snapshot in some local hour.
_PENDING = text(
    """
    SELECT s.connection_id, s.metrics_date, c.timezone, count(*) AS rows
    FROM metric_snapshots s JOIN connections c ON c.id = s.connection_id
    WHERE c.timezone IN (SELECT name FROM pg_timezone_names)
      AND s.metrics_date < (now() AT TIME ZONE c.timezone)::date - 1
    GROUP BY s.connection_id, s.metrics_date, c.timezone
    HAVING count(*) > count(DISTINCT (s.entity_id, date_trunc('hour', s.captured_at, c.timezone)))
    ORDER BY s.metrics_date, s.connection_id
    """
)

# Connections whose stored zone PostgreSQL does not know (stored before zones were validated):
# skipped and named in the log, instead of failing the whole run for every tenant.
_UNKNOWN_ZONES = text(
    """
    SELECT id, timezone FROM connections
    WHERE timezone NOT IN (SELECT name FROM pg_timezone_names)
    """
)

_COMPACT_DAY = text(
    """
    DELETE FROM metric_snapshots s
    USING (
        SELECT id, row_number() OVER (
            PARTITION BY entity_id, date_trunc('hour', captured_at, :tz)
            ORDER BY captured_at DESC, id DESC
        ) AS rank
        FROM metric_snapshots
        WHERE connection_id = :connection_id AND metrics_date = :day
    ) ranked
    WHERE s.id = ranked.id AND ranked.rank > 1
    """
)


class CompactionStats(TypedDict):
    """What one compaction run did; rows are counted over the days it compacted."""

    days: int
    failed_days: int
    rows_before: int
    rows_after: int
    rows_removed: int


async def compact_day(connection_id: uuid.UUID, day: date, timezone: str) -> int:
    """Compact one connection's day in one transaction; returns the rows removed."""
    async with session_scope() as session:
        result = await session.execute(
            _COMPACT_DAY, {"connection_id": connection_id, "day": day, "tz": timezone}
        )
    return int(getattr(result, "rowcount", 0) or 0)


async def compact_all() -> CompactionStats:
    """Compact every pending day of every connection; report the rows before and after."""
    async with session_scope() as session:
        for bad in (await session.execute(_UNKNOWN_ZONES)).all():
            log.warning("compaction_skipped", connection_id=str(bad.id), reason="unknown timezone")
        pending = (await session.execute(_PENDING)).all()
    before = sum(int(row.rows) for row in pending)
    removed = failed = 0
    for row in pending:
        try:
            day_removed = await compact_day(row.connection_id, row.metrics_date, row.timezone)
        except Exception as exc:
            if infra_error(exc) is not None:
                raise  # PostgreSQL is down: the job is retried, nothing to isolate
            # One connection's bad day must not stop every other tenant's compaction.
            failed += 1
            log.error(
                "day_compaction_failed",
                connection_id=str(row.connection_id),
                metrics_date=row.metrics_date.isoformat(),
                error_type=type(exc).__name__,
            )
            continue
        removed += day_removed
        log.debug(
            "day_compacted",
            connection_id=str(row.connection_id),
            metrics_date=row.metrics_date.isoformat(),
            rows_removed=day_removed,
        )
    stats: CompactionStats = {
        "days": len(pending),
        "failed_days": failed,
        "rows_before": before,
        "rows_after": before - removed,
        "rows_removed": removed,
    }
    log.info("compaction_finished", **stats)
    return stats
