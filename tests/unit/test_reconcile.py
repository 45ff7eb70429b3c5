"""Coverage summaries and which sync closes a gap (the database side is in tests/integration)."""

from __future__ import annotations

from datetime import date, timedelta

from core.coverage import Coverage
from core.providers import SyncMode
from core.reconcile import gap_mode

YESTERDAY = date(2026, 11, 30)


def test_the_summary_reads_like_the_issue() -> None:
    missing = (YESTERDAY, YESTERDAY - timedelta(days=1), YESTERDAY - timedelta(days=40))
    assert Coverage(90, missing, 7, queued=3).summary() == "87/90 days, 3 queued"
    assert Coverage(90, missing, 7).summary() == "87/90 days"
    assert Coverage(90, (), 7).as_dict()["days_covered"] == 90


def test_only_yesterday_open_is_a_realtime_sync_anything_older_a_backfill() -> None:
    assert gap_mode(Coverage(90, (), 7), YESTERDAY, realtime=True) is None
    assert gap_mode(Coverage(90, (YESTERDAY,), 7), YESTERDAY, realtime=True) is SyncMode.realtime
    assert gap_mode(Coverage(90, (YESTERDAY,), 7), YESTERDAY, realtime=False) is SyncMode.backfill
    older = (YESTERDAY, YESTERDAY - timedelta(days=2))
    assert gap_mode(Coverage(90, older, 7), YESTERDAY, realtime=True) is SyncMode.backfill
