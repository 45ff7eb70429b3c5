"""Sync windows and snapshot times in the account's timezone."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise

import pytest

from core.errors import ConfigError
from core.providers import Capabilities, SyncMode
from core.sync.windows import (
    attribution_window,
    backfill_slices,
    captured_at,
    deep_tier_window,
    end_of_day,
    is_deep_tier_day,
    local_today,
    realtime_window,
    slices_of_days,
    slot_start,
    windows_for,
)

# 23:30 UTC on Nov 28 is already Nov 29 in Tokyo (UTC+9) and still Nov 28 in Los Angeles.
LATE_UTC = datetime(2026, 11, 28, 23, 30, tzinfo=UTC)


def test_today_is_the_accounts_day_not_utcs() -> None:
    assert local_today("Asia/Tokyo", LATE_UTC) == date(2026, 11, 29)
    assert local_today("America/Los_Angeles", LATE_UTC) == date(2026, 11, 28)
    assert local_today("UTC", LATE_UTC) == date(2026, 11, 28)


def test_realtime_includes_yesterday_once_after_midnight() -> None:
    last = datetime(2026, 11, 28, 14, 50, tzinfo=UTC)  # 23:50 Tokyo, the day before
    w = realtime_window("Asia/Tokyo", LATE_UTC, last)
    assert (w.start, w.end) == (date(2026, 11, 28), date(2026, 11, 29))
    w2 = realtime_window("Asia/Tokyo", LATE_UTC, LATE_UTC)
    assert (w2.start, w2.end) == (date(2026, 11, 29), date(2026, 11, 29))


def test_attribution_is_the_seven_days_before_today() -> None:
    w = attribution_window("Asia/Tokyo", LATE_UTC, 7)
    assert (w.start, w.end, w.days) == (date(2026, 11, 22), date(2026, 11, 28), 7)


def test_backfill_slices_newest_first_and_resume() -> None:
    slices = backfill_slices("UTC", LATE_UTC, 90, 7)
    assert slices[0].end == date(2026, 11, 27) and slices[-1].start == date(2026, 8, 30)
    assert sum(s.days for s in slices) == 90
    assert all(a.start > b.end for a, b in pairwise(slices))
    resumed = backfill_slices("UTC", LATE_UTC, 90, 7, resume_before=slices[1].start)
    assert resumed[0].end == slices[2].end and sum(s.days for s in resumed) == 90 - 14


def test_snapshot_times() -> None:
    now = datetime(2026, 11, 28, 10, 44, 59, tzinfo=UTC)
    assert slot_start(now) == datetime(2026, 11, 28, 10, 30, tzinfo=UTC)
    assert captured_at(date(2026, 11, 28), "UTC", now) == slot_start(now)
    # a past day's final totals sit at the local midnight that ends it (Kolkata: 18:30 UTC)
    assert end_of_day(date(2026, 11, 27), "Asia/Kolkata") == datetime(2026, 11, 27, 18, 30, tzinfo=UTC)
    assert captured_at(date(2026, 11, 27), "Asia/Kolkata", now) == end_of_day(
        date(2026, 11, 27), "Asia/Kolkata"
    )


def test_provider_overrides_and_bad_timezone() -> None:
    caps = Capabilities(levels=("campaign",), attribution_window_days=28)
    [w] = windows_for(SyncMode.attribution, caps, "UTC", LATE_UTC, last_completed_at=None)
    assert w.days == 28
    [w] = windows_for(SyncMode.attribution, caps, "UTC", LATE_UTC, last_completed_at=None, attribution_days=3)
    assert w.days == 3
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        local_today("Mars/Olympus", LATE_UTC)


def test_realtime_keeps_yesterday_until_coverage_says_it_is_closed() -> None:
    # A store job finished after midnight (last_completed_at is today): yesterday is still open.
    w = realtime_window("Asia/Tokyo", LATE_UTC, LATE_UTC, yesterday_closed=False)
    assert (w.start, w.end) == (date(2026, 11, 28), date(2026, 11, 29))
    w2 = realtime_window("Asia/Tokyo", LATE_UTC, None, yesterday_closed=True)
    assert (w2.start, w2.end) == (date(2026, 11, 29), date(2026, 11, 29))


def test_slices_cover_exactly_the_missing_days_newest_first() -> None:
    today = date(2026, 11, 28)
    missing = [today - timedelta(days=d) for d in (*range(1, 21), *range(51, 91))]
    slices = slices_of_days(missing, 30, "UTC")
    covered = {s.start + timedelta(days=i) for s in slices for i in range(s.days)}
    assert covered == set(missing)
    assert all(s.days <= 30 for s in slices) and all(a.start > b.end for a, b in pairwise(slices))
    assert slices[0].end == today - timedelta(days=1)
    assert slices_of_days([], 30, "UTC") == []


def test_the_deep_tier_is_days_8_to_the_horizon_on_one_weekday_per_connection() -> None:
    from metricx_meta.provider import MetaProvider

    horizon = MetaProvider.capabilities.revision_days
    assert horizon == 28
    w = deep_tier_window("UTC", LATE_UTC, 7, horizon)
    assert w is not None and (w.start, w.end) == (date(2026, 10, 31), date(2026, 11, 20))
    assert w.days == 21  # days 8..28 before today
    assert deep_tier_window("UTC", LATE_UTC, 7, 7) is None
    ids = [uuid.UUID(int=n) for n in range(700)]
    week = [date(2026, 11, 23) + timedelta(days=i) for i in range(7)]
    # Each connection has exactly one deep day a week, and the fleet is spread evenly.
    assert all(sum(is_deep_tier_day(c, d) for d in week) == 1 for c in ids)
    assert {sum(is_deep_tier_day(c, d) for c in ids) for d in week} == {100}
