"""Sync windows per mode, computed in the account's timezone, and snapshot times.

Values are cumulative "day so far" totals. Today's realtime values are written
at ``captured_at`` = now rounded down to 15 minutes (re-running a slot
overwrites it); a past day's final totals live at one fixed end-of-day time:
the account-local midnight that ends the day.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import ConfigError
from core.providers import Capabilities, SyncMode, SyncWindow

SLOT_MINUTES = 15


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown IANA timezone {name!r} on the connection") from None


def local_today(timezone: str, now: datetime) -> date:
    """The account's calendar day at ``now``."""
    return now.astimezone(zone(timezone)).date()


def slot_start(now: datetime) -> datetime:
    """``now`` rounded down to its 15-minute slot, in UTC."""
    now = now.astimezone(UTC)
    return now.replace(minute=now.minute - now.minute % SLOT_MINUTES, second=0, microsecond=0)


def end_of_day(day: date, timezone: str) -> datetime:
    """The fixed snapshot time of a past day's final totals: the local midnight ending it, in UTC."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone(timezone)).astimezone(UTC)


def captured_at(day: date, timezone: str, now: datetime) -> datetime:
    """Where a value for ``day`` is written: today's slot, or the day's end for a past day."""
    if day >= local_today(timezone, now):
        return slot_start(now)
    return end_of_day(day, timezone)


def realtime_window(
    timezone: str,
    now: datetime,
    last_completed_at: datetime | None,
    *,
    yesterday_closed: bool | None = None,
) -> SyncWindow:
    """Today; plus yesterday until it is closed (fetched after the account's midnight).

    ``yesterday_closed`` comes from coverage (the data): any other job finishing
    after midnight does not close yesterday. Without it, the last finished
    sync's time decides (the seed's rule).
    """
    today = local_today(timezone, now)
    start = today
    if yesterday_closed is None:
        yesterday_closed = last_completed_at is not None and local_today(timezone, last_completed_at) >= today
    if not yesterday_closed:
        start = today - timedelta(days=1)
    return SyncWindow(SyncMode.realtime, start, today, timezone)


def attribution_window(timezone: str, now: datetime, days: int) -> SyncWindow:
    """The ``days`` full days before today, re-pulled because platforms revise conversions late."""
    today = local_today(timezone, now)
    return SyncWindow(SyncMode.attribution, today - timedelta(days=days), today - timedelta(days=1), timezone)


def backfill_slices(
    timezone: str, now: datetime, days: int, slice_days: int, resume_before: date | None = None
) -> list[SyncWindow]:
    """The ``days`` days before today in slices of ``slice_days``, newest first.

    ``resume_before`` is the oldest day already stored by an interrupted
    backfill: slices from there on are skipped.
    """
    today = local_today(timezone, now)
    first = today - timedelta(days=days)
    end = today - timedelta(days=1)
    if resume_before is not None and first <= resume_before <= end:
        end = resume_before - timedelta(days=1)
    slices: list[SyncWindow] = []
    while end >= first:
        start = max(first, end - timedelta(days=slice_days - 1))
        slices.append(SyncWindow(SyncMode.backfill, start, end, timezone))
        end = start - timedelta(days=1)
    return slices


def slices_of_days(days: Iterable[date], slice_days: int, timezone: str) -> list[SyncWindow]:
    """Backfill windows covering exactly ``days``: runs of consecutive days cut in slices, newest first."""
    slices: list[SyncWindow] = []
    ordered = sorted(set(days), reverse=True)
    i = 0
    while i < len(ordered):
        end = start = ordered[i]
        i += 1
        while (
            i < len(ordered)
            and ordered[i] == start - timedelta(days=1)
            and (end - start).days + 1 < slice_days
        ):
            start = ordered[i]
            i += 1
        slices.append(SyncWindow(SyncMode.backfill, start, end, timezone))
    return slices


def is_deep_tier_day(connection_id: uuid.UUID, day: date) -> bool:
    """Whether ``day`` is the connection's weekday for the deep revision tier (a stable hash).

    Connections are spread evenly over the seven weekdays, so the fleet's deep
    re-reads cost the same every night.
    """
    return connection_id.int % 7 == day.weekday()


def deep_tier_window(timezone: str, now: datetime, recent_days: int, revision_days: int) -> SyncWindow | None:
    """The revisable days older than the nightly ``recent_days``: days recent+1 .. revision_days ago."""
    if revision_days <= recent_days:
        return None
    today = local_today(timezone, now)
    return SyncWindow(
        SyncMode.attribution,
        today - timedelta(days=revision_days),
        today - timedelta(days=recent_days + 1),
        timezone,
    )


def total_backfill_slices(days: int, slice_days: int) -> int:
    return -(-days // slice_days)


def windows_for(
    mode: SyncMode,
    capabilities: Capabilities,
    timezone: str,
    now: datetime,
    *,
    last_completed_at: datetime | None,
    attribution_days: int | None = None,
    backfill_days: int | None = None,
    slice_days: int | None = None,
    resume_before: date | None = None,
) -> list[SyncWindow]:
    """Every window one sync of ``mode`` fetches, provider overrides applied."""
    if mode is SyncMode.realtime:
        return [realtime_window(timezone, now, last_completed_at)]
    if mode is SyncMode.attribution:
        return [attribution_window(timezone, now, attribution_days or capabilities.attribution_window_days)]
    return backfill_slices(
        timezone,
        now,
        backfill_days or capabilities.backfill_days,
        slice_days or capabilities.backfill_slice_days,
        resume_before,
    )
