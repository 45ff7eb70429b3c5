"""Coverage: which local days of a connection's backfill horizon hold final data, from the database.

Every fetched window records its days in ``coverage_days`` with the time the
fetch started. A day is *closed* once it was fetched after the account-local
midnight that ends it (its final totals are stored); it stays *revisable* while
it is within the provider's revision horizon. Coverage, not events, decides
what to fetch: a backfill fetches the days that are not closed, realtime keeps
yesterday in its window until yesterday is closed, and the reconciler
(:mod:`core.reconcile`) queues whatever closes a gap.

A day the provider reported it cannot read (``ProviderContext.coverage.unavailable_before``, e.g.
Shopify's orders older than 60 days without ``read_all_orders``) is *unavailable*: recorded with
its reason, neither missing nor covered, never fetched again by a backfill or queued by the
reconciler, and named as not available by the coverage and metrics APIs; after
``unavailable_recheck_days`` the mark is stale and the day is asked for again (access may have
been granted meanwhile).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

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
    unavailable: tuple[date, ...] = ()  # days the provider cannot read, newest first
    unavailable_reason: str | None = None  # the newest unavailable day's reason

    @property
    def covered(self) -> int:
        """Days in the horizon whose final totals are stored."""
        return self.total - len(self.missing) - len(self.unavailable)

    @property
    def complete(self) -> bool:
        return not self.missing

    def summary(self) -> str:
        """``87/90 days, 3 queued`` as ``metricx status`` and the API show it."""
        text = f"{self.covered}/{self.total} days"
        if self.unavailable:
            text += f", {len(self.unavailable)} not available"
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
            "days_unavailable": len(self.unavailable),
            "newest_unavailable": self.unavailable[0].isoformat() if self.unavailable else None,
            "unavailable_reason": self.unavailable_reason,
            "summary": self.summary(),
        }


# One statement whatever the number of days (a multi-row VALUES compiled anew per row count).
_RECORD_FETCHED = text(
    """
    INSERT INTO coverage_days (connection_id, day, fetched_at)
    SELECT :connection_id, day, :fetched_at FROM unnest(CAST(:days AS date[])) AS day
    ON CONFLICT (connection_id, day)
    DO UPDATE SET fetched_at = greatest(coverage_days.fetched_at, excluded.fetched_at),
                  unavailable_reason = NULL
    """
)

# A day already closed by a fetch that read it keeps its data and stays fetched (it was readable
# then); any other day becomes unavailable with the reason.
_RECORD_UNAVAILABLE = text(
    """
    INSERT INTO coverage_days (connection_id, day, fetched_at, unavailable_reason)
    SELECT :connection_id, day, :fetched_at, :reason FROM unnest(CAST(:days AS date[])) AS day
    ON CONFLICT (connection_id, day)
    DO UPDATE SET fetched_at = greatest(coverage_days.fetched_at, excluded.fetched_at),
                  unavailable_reason = excluded.unavailable_reason
    WHERE coverage_days.unavailable_reason IS NOT NULL
       OR coverage_days.fetched_at < CAST(coverage_days.day + 1 AS timestamp) AT TIME ZONE :timezone
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


async def record_unavailable(
    session: AsyncSession,
    connection_id: uuid.UUID,
    days: Iterable[date],
    fetched_at: datetime,
    reason: str,
    timezone: str,
) -> None:
    """Record that the provider cannot read ``days`` (``reason``); a day already closed stays closed."""
    wanted = sorted(set(days))
    if not wanted:
        return
    await session.execute(
        _RECORD_UNAVAILABLE,
        {
            "connection_id": connection_id,
            "days": wanted,
            "fetched_at": fetched_at,
            "reason": reason[:500],
            "timezone": timezone,
        },
    )


async def day_states(
    session: AsyncSession,
    connection_id: uuid.UUID,
    first: date,
    last: date,
    timezone: str,
    now: datetime | None = None,
) -> tuple[set[date], dict[date, str]]:
    """(closed days, {unavailable day: reason}) in ``first..last``.

    A mark older than ``unavailable_recheck_days`` is neither: the day is missing again, so the
    reconciler asks for it once more (the account may have been given access meanwhile).
    """
    rows = await session.execute(
        select(CoverageDay.day, CoverageDay.fetched_at, CoverageDay.unavailable_reason).where(
            CoverageDay.connection_id == connection_id, CoverageDay.day.between(first, last)
        )
    )
    recheck = (now or datetime.now(UTC)) - timedelta(days=get_settings().unavailable_recheck_days)
    closed: set[date] = set()
    unavailable: dict[date, str] = {}
    for day, fetched_at, reason in rows:
        if reason is not None:
            if fetched_at >= recheck:
                unavailable[day] = reason
        elif fetched_at >= end_of_day(day, timezone):
            closed.add(day)
    return closed, unavailable


async def closed_days(
    session: AsyncSession,
    connection_id: uuid.UUID,
    first: date,
    last: date,
    timezone: str,
    now: datetime | None = None,
) -> set[date]:
    """The days in ``first..last`` with nothing left to fetch: final totals stored (fetched after
    the day ended), or unavailable (the provider cannot read them; marked recently)."""
    closed, unavailable = await day_states(session, connection_id, first, last, timezone, now)
    return closed | set(unavailable)


async def unavailable_days(
    session: AsyncSession, connection_id: uuid.UUID, first: date, last: date
) -> dict[date, str]:
    """{day: reason} of the days in ``first..last`` the provider reported it cannot read."""
    rows = await session.execute(
        select(CoverageDay.day, CoverageDay.unavailable_reason).where(
            CoverageDay.connection_id == connection_id,
            CoverageDay.day.between(first, last),
            CoverageDay.unavailable_reason.is_not(None),
        )
    )
    return {day: str(reason) for day, reason in rows}


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
    closed, unavailable = await day_states(session, connection_id, first, last, timezone, now)
    every = [last - timedelta(days=i) for i in range(days)]
    missing = tuple(d for d in every if d not in closed and d not in unavailable)
    revisable_from = last - timedelta(days=revision_days - 1)
    revisable = sum(1 for d in closed if d >= revisable_from)
    gone = tuple(d for d in every if d in unavailable)
    reason = unavailable[gone[0]] if gone else None
    return Coverage(days, missing, revisable, len(missing) if queued else 0, gone, reason)


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
    return Coverage(cov.total, cov.missing, cov.revisable, queued, cov.unavailable, cov.unavailable_reason)


__all__ = [
    "Coverage",
    "closed_days",
    "connection_coverage",
    "coverage_of",
    "day_states",
    "horizon",
    "record_fetched",
    "record_unavailable",
    "unavailable_days",
]
