"""Coverage: which local days of a connection's backfill horizon hold final data, from the database.

Every fetched window records its days in ``coverage_days`` with the time the
fetch started. A day is *closed* once it was fetched after the account-local
midnight that ends it (its final totals are stored); it stays *revisable* while
it is within the provider's revision horizon. Coverage, not events, decides
what to fetch: a backfill fetches the days that are not closed, realtime keeps
yesterday in its window until yesterday is closed, and the reconciler
(:mod:`core.reconcile`) queues whatever closes a gap.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import get_settings
from core.db.models import Connection, CoverageDay
from core.providers import Capabilities, Provider, SyncMode
from core.state import BUSY, SyncJobId
from core.sync.windows import end_of_day, local_today


@dataclass(frozen=True, slots=True)
class Coverage:
    """One connection's coverage of the ``total`` days before its local today."""

    total: int
    missing: tuple[date, ...]  # not closed, newest first
    revisable: int  # closed days still inside the provider's revision horizon
    queued: int = 0  # missing days a queued or running sync will fetch

    @property
    def covered(self) -> int:
        """Days in the horizon whose final totals are stored."""
        return self.total - len(self.missing)

    @property
    def complete(self) -> bool:
        return not self.missing

    def summary(self) -> str:
        """``87/90 days, 3 queued`` as ``metricx status`` and the API show it."""
        text = f"{self.covered}/{self.total} days"
        return f"{text}, {self.queued} queued" if self.queued else text

    def as_dict(self) -> dict[str, object]:
        """The API's ``coverage`` object."""
        return {
            "days_total": self.total,
            "days_covered": self.covered,
            "days_missing": len(self.missing),
            "days_queued": self.queued,
            "days_revisable": self.revisable,
            "oldest_missing": self.missing[-1].isoformat() if self.missing else None,
            "summary": self.summary(),
        }


# One statement whatever the number of days (a multi-row VALUES compiled anew per row count).
_RECORD_FETCHED = text(
    """
    INSERT INTO coverage_days (connection_id, day, fetched_at)
    SELECT :connection_id, day, :fetched_at FROM unnest(CAST(:days AS date[])) AS day
    ON CONFLICT (connection_id, day)
    DO UPDATE SET fetched_at = greatest(coverage_days.fetched_at, excluded.fetched_at)
    """
)


async def record_fetched(
    session: AsyncSession, connection_id: uuid.UUID, days: Iterable[date], fetched_at: datetime
) -> None:
    """Record that ``days`` were fetched by a fetch that started at ``fetched_at`` (never moves back)."""
    wanted = sorted(set(days))
    if not wanted:
        return
    await session.execute(
        _RECORD_FETCHED, {"connection_id": connection_id, "days": wanted, "fetched_at": fetched_at}
    )


async def closed_days(
    session: AsyncSession, connection_id: uuid.UUID, first: date, last: date, timezone: str
) -> set[date]:
    """The days in ``first..last`` whose final totals are stored (fetched after the day ended)."""
    rows = await session.execute(
        select(CoverageDay.day, CoverageDay.fetched_at).where(
            CoverageDay.connection_id == connection_id, CoverageDay.day.between(first, last)
        )
    )
    return {day for day, fetched_at in rows if fetched_at >= end_of_day(day, timezone)}


def horizon(timezone: str, now: datetime, days: int) -> tuple[date, date]:
    """The backfill horizon: the ``days`` local days before today (first, last)."""
    today = local_today(timezone, now)
    return today - timedelta(days=days), today - timedelta(days=1)


async def coverage_of(
    session: AsyncSession,
    connection_id: uuid.UUID,
    timezone: str,
    now: datetime,
    *,
    days: int,
    revision_days: int,
    queued: bool = False,
) -> Coverage:
    """The connection's coverage at ``now``; ``queued`` when a sync that fetches the gaps is pending."""
    first, last = horizon(timezone, now, days)
    closed = await closed_days(session, connection_id, first, last, timezone)
    missing = tuple(last - timedelta(days=i) for i in range(days) if last - timedelta(days=i) not in closed)
    revisable_from = last - timedelta(days=revision_days - 1)
    revisable = sum(1 for d in closed if d >= revisable_from)
    return Coverage(days, missing, revisable, len(missing) if queued else 0)


def _pending(connection: Connection, today: date, missing: tuple[date, ...], recent_days: int) -> int:
    """How many ``missing`` days the connection's queued or running sync will fetch."""
    if connection.sync_status not in BUSY:
        return 0
    job = SyncJobId.parse(connection.current_job_id)
    if job is None or job.mode == SyncMode.backfill:
        return len(missing)  # a backfill (or a plugin job of unknown reach): all of them
    reach = 1 if job.mode == SyncMode.realtime else recent_days
    return sum(1 for d in missing if d >= today - timedelta(days=reach))


async def connection_coverage(
    session: AsyncSession, connection: Connection, provider: Provider | None, now: datetime
) -> Coverage:
    """``connection``'s coverage as ``metricx status`` and the API show it (provider defaults if absent)."""
    caps = provider.capabilities if provider is not None else Capabilities(levels=())
    settings = get_settings()
    tz = connection.timezone or "UTC"
    cov = await coverage_of(
        session,
        connection.id,
        tz,
        now,
        days=settings.backfill_days or caps.backfill_days,
        revision_days=caps.revision_days,
    )
    recent = settings.attribution_days or caps.attribution_window_days
    queued = _pending(connection, local_today(tz, now), cov.missing, recent)
    return Coverage(cov.total, cov.missing, cov.revisable, queued)


__all__ = ["Coverage", "closed_days", "connection_coverage", "coverage_of", "horizon", "record_fetched"]
