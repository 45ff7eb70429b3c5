"""What the dashboard says about a connection: freshness wording and the action its state calls for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from core.db.models import Connection
from core.state import ConnectionStatus, SyncStatus
from core.web.charts import bar_chart, number_text
from core.web.views import action_for, ago, connection_row

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def conn(status: str = "active", sync: str = "idle", **fields: object) -> Connection:
    return Connection(status=status, sync_status=sync, external_account_id="a1", **fields)


def test_freshness_reads_like_a_person_would_say_it() -> None:
    assert ago(None, NOW) == "never synced"
    assert ago(NOW - timedelta(seconds=20), NOW) == "synced just now"
    assert ago(NOW - timedelta(minutes=4, seconds=30), NOW) == "synced 4 min ago"
    assert ago(NOW - timedelta(hours=3, minutes=5), NOW) == "synced 3 h ago"
    assert ago(NOW - timedelta(days=2, hours=1), NOW) == "synced 2 days ago"
    assert ago(NOW - timedelta(days=1), NOW) == "synced 1 day ago"


def test_each_state_calls_for_its_action() -> None:
    assert action_for(conn()) is None
    assert action_for(conn(sync=SyncStatus.syncing)) is None
    reconnect = action_for(conn(sync=SyncStatus.reconnect_required))
    assert reconnect is not None and reconnect.button == "reconnect" and "connect flow" in reconnect.note
    paused = action_for(conn(status=ConnectionStatus.paused, sync=SyncStatus.reconnect_required))
    assert paused is not None and paused.button == "resume"
    throttled = action_for(
        conn(sync=SyncStatus.rate_limited, rate_limited_until=datetime(2026, 12, 1, 13, 30, tzinfo=UTC))
    )
    assert throttled is not None and throttled.label == "wait until 13:30 UTC" and throttled.button is None
    failed = action_for(conn(sync=SyncStatus.error))
    assert failed is not None and failed.button == "sync"
    gone = action_for(conn(status=ConnectionStatus.disconnected))
    assert gone is not None and gone.button is None


def test_needs_attention_follows_the_state_module() -> None:
    for sync in SyncStatus:
        row = connection_row(conn(sync=sync), NOW)
        assert row.needs_attention is (sync in {"error", "rate_limited", "reconnect_required"})


def test_bars_keep_exact_values_and_scale_to_the_largest() -> None:
    day = NOW.date()
    chart = bar_chart("spend", "Spend", "USD", [(day, Decimal("10.50")), (day, Decimal("21.00"))])
    assert [b.value for b in chart.bars] == [Decimal("10.50"), Decimal("21.00")]
    assert chart.bars[1].height == 2 * chart.bars[0].height > 0
    assert chart.total_text == "31.50" and chart.max_text == "21.00"
    assert number_text(Decimal("522.000000"), money=False) == "522"
    empty = bar_chart("spend", "Spend", "USD", [])
    assert empty.bars == () and empty.total == 0
