"""Sync windows and snapshot times in the account's timezone."""

from __future__ import annotations

from datetime import UTC, date, datetime
from itertools import pairwise

import pytest

from core.errors import ConfigError
from core.providers import Capabilities, SyncMode
from core.sync.windows import (
    attribution_window,
    backfill_slices,
    captured_at,
    end_of_day,
    local_today,
    realtime_window,
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
