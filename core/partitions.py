"""Monthly partitions of ``metric_snapshots`` (range partitions on ``metrics_date``), created ahead.

Migration ``0008_snapshot_partitions`` made the table partitioned: one partition per month
(``metric_snapshots_pYYYYMM``) and a DEFAULT partition that takes any date without one, so no
write is ever refused. The nightly compaction job calls :func:`ensure_partitions` first: every
month from :data:`MONTHS_BACK` before the current one to :data:`MONTHS_AHEAD` after it has its
partition, the coming ones before any row of theirs arrives. Should rows have reached the DEFAULT
partition for a month that then gets its own (a month created late), they are moved into it in
the same transaction.

A query on a date range (the compaction after its watermark, the metrics API's days) reads
only the partitions of those months; old detail can leave as a partition (``DROP TABLE``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.engine import session_scope

log = structlog.get_logger(__name__, component="SCHEDULER")

#: Months after the current one that get their partition ahead of time.
MONTHS_AHEAD = 2
#: Months before the current one that have their own partition (a backfill reaches back this far at
#: most; older days go to the DEFAULT partition).
MONTHS_BACK = 24
TABLE = "metric_snapshots"
DEFAULT = "metric_snapshots_default"


def month_start(day: date, shift: int = 0) -> date:
    """The first day of ``day``'s month, ``shift`` months later (earlier if negative)."""
    index = day.year * 12 + day.month - 1 + shift
    return date(index // 12, index % 12 + 1, 1)


def partition_name(month: date) -> str:
    return f"{TABLE}_p{month:%Y%m}"


def months_for(today: date) -> list[date]:
    """The months that have their own partition: :data:`MONTHS_BACK` before ``today``'s (a backfill's
    days land in theirs) through :data:`MONTHS_AHEAD` after it."""
    months = []
    month, end = month_start(today, -MONTHS_BACK), month_start(today, MONTHS_AHEAD)
    while month <= end:
        months.append(month)
        month = month_start(month, 1)
    return months


def month_partitions(months: list[date]) -> list[str]:
    """``CREATE TABLE ... PARTITION OF`` for each month (the DEFAULT partition must hold none of them)."""
    return [
        f"CREATE TABLE IF NOT EXISTS {partition_name(m)} PARTITION OF {TABLE} "
        f"FOR VALUES FROM ('{m.isoformat()}') TO ('{month_start(m, 1).isoformat()}')"
        for m in months
    ]


async def _create(session: AsyncSession, month: date) -> None:
    """The month's partition, with whatever the DEFAULT partition holds of that month moved into it."""
    name, lo, hi = partition_name(month), month.isoformat(), month_start(month, 1).isoformat()
    for statement in (
        f"CREATE TABLE {name} (LIKE {TABLE} INCLUDING DEFAULTS)",
        f"INSERT INTO {name} SELECT * FROM {DEFAULT} WHERE metrics_date >= '{lo}' AND metrics_date < '{hi}'",
        f"DELETE FROM {DEFAULT} WHERE metrics_date >= '{lo}' AND metrics_date < '{hi}'",
        f"ALTER TABLE {TABLE} ATTACH PARTITION {name} FOR VALUES FROM ('{lo}') TO ('{hi}')",
    ):
        await session.execute(text(statement))


async def ensure_partitions(today: date | None = None) -> list[str]:
    """Create the missing partitions of :func:`months_for` ``today``; the names created. Safe to run
    any number of times (and from two schedulers at once: one waits, then finds them there)."""
    today = today or datetime.now(UTC).date()
    created = []
    async with session_scope() as session:
        # One creator at a time; a second one then sees the partitions and creates nothing.
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('metricx:snapshot_partitions'))"))
        for month in months_for(today):
            name = partition_name(month)
            if await session.scalar(text("SELECT to_regclass(:name)"), {"name": name}) is None:
                await _create(session, month)
                created.append(name)
    if created:
        log.info("snapshot_partitions_created", partitions=created)
    return created
