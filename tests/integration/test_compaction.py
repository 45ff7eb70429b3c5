"""Compaction of 15-minute snapshots into hourly ones, against real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from core.db.engine import session_scope
from core.jobs import scheduled_compaction
from core.sync.windows import end_of_day
from tests.conftest import fetch_all

SLOTS = """
INSERT INTO metric_snapshots (workspace_id, connection_id, entity_id, metrics_date, captured_at,
                              spend, impressions, clicks, conversions, revenue, currency)
SELECT e.workspace_id, e.connection_id, e.id, :day,
       (CAST(:day AS date)::timestamp AT TIME ZONE :tz) + g * interval '15 minutes',
       -- cumulative "day so far" values; at 10:45 the platform corrected spend down to 5
       CASE WHEN g = 43 THEN 5 ELSE g END, g * 100, g * 10, g / 4.0, g * 2, :currency
FROM entities e CROSS JOIN generate_series(0, 95) AS g
WHERE e.connection_id = :c
"""
FINAL = """
INSERT INTO metric_snapshots (workspace_id, connection_id, entity_id, metrics_date, captured_at,
                              spend, impressions, clicks, conversions, revenue, currency)
SELECT e.workspace_id, e.connection_id, e.id, :day, :at, 1000, 99999, 9999, 250, 2000, :currency
FROM entities e WHERE e.connection_id = :c
"""


async def make_account(timezone: str, currency: str) -> uuid.UUID:
    ws, conn = uuid.uuid4(), uuid.uuid4()
    async with session_scope() as session:
        await session.execute(text("INSERT INTO workspaces (id, name) VALUES (:w, 'compaction')"), {"w": ws})
        await session.execute(
            text(
                "INSERT INTO connections (id, workspace_id, provider, external_account_id, timezone, "
                "currency, config, status, sync_status, total_syncs_attempted, total_syncs_succeeded) "
                "VALUES (:c, :w, 'testprovider', :acct, :tz, :cur, '{}'::jsonb, 'active', 'idle', 0, 0)"
            ),
            {"c": conn, "w": ws, "acct": f"acct-{conn.hex[:8]}", "tz": timezone, "cur": currency},
        )
        for external_id in ("ad-1", "ad-2"):
            await session.execute(
                text(
                    "INSERT INTO entities (id, workspace_id, connection_id, level, external_id, raw, "
                    "updated_at) VALUES (gen_random_uuid(), :w, :c, 'ad', :x, '{}'::jsonb, now())"
                ),
                {"w": ws, "c": conn, "x": external_id},
            )
    return conn


async def add_day(conn: uuid.UUID, day: date, timezone: str, currency: str) -> None:
    """96 slot snapshots per entity, plus the day's final row at the local midnight ending it."""
    params = {"c": conn, "day": day, "tz": timezone, "currency": currency}
    async with session_scope() as session:
        await session.execute(text(SLOTS), params)
        await session.execute(text(FINAL), {**params, "at": end_of_day(day, timezone)})


async def snapshot_rows(conn: uuid.UUID) -> list[Any]:
    return await fetch_all(
        "SELECT s.entity_id, s.metrics_date, s.captured_at, s.spend, s.impressions, s.clicks, "
        "s.conversions, s.revenue, s.currency FROM metric_snapshots s WHERE s.connection_id = :c "
        "ORDER BY s.entity_id, s.metrics_date, s.captured_at",
        c=conn,
    )


@pytest.fixture
async def accounts(metricx_env: Any) -> dict[str, Any]:
    """A UTC and an Asia/Kolkata account, each with two old days, yesterday and today."""
    async with session_scope() as session:
        await session.execute(text("DELETE FROM metric_snapshots"))
    made: dict[str, Any] = {}
    for timezone, currency in (("UTC", "USD"), ("Asia/Kolkata", "INR")):
        conn = await make_account(timezone, currency)
        today = datetime.now(ZoneInfo(timezone)).date()
        days = {
            "missed": today - timedelta(days=6),
            "old": today - timedelta(days=2),
            "yesterday": today - timedelta(days=1),
        }
        for day in days.values():
            await add_day(conn, day, timezone, currency)
        made[timezone] = {"conn": conn, "currency": currency, **days}
    return made


def local(ts: datetime, timezone: str) -> datetime:
    return ts.astimezone(ZoneInfo(timezone))


@pytest.mark.parametrize("timezone", ["UTC", "Asia/Kolkata"])
async def test_each_hour_keeps_its_latest_snapshot(accounts: dict[str, Any], timezone: str) -> None:
    acct = accounts[timezone]
    stats = await scheduled_compaction({}, tick=None)
    # 2 accounts x 2 old days x 2 entities x (96 + final row) -> 24 + final row
    assert stats == {
        "days": 4,
        "failed_connections": 0,
        "rows_before": 776,
        "rows_after": 200,
        "rows_removed": 576,
    }

    rows = await snapshot_rows(acct["conn"])
    for day in (acct["missed"], acct["old"]):
        day_rows = [r for r in rows if r.metrics_date == day]
        final_at = end_of_day(day, timezone)
        slots = [r for r in day_rows if r.captured_at != final_at]
        finals = [r for r in day_rows if r.captured_at == final_at]
        assert len(slots) == 2 * 24 and len(finals) == 2
        for row in slots:
            at = local(row.captured_at, timezone)
            # the hour's last 15-minute slot, in the account's local time (:45 local = :15 UTC in Kolkata)
            assert at.date() == day and at.minute == 45
            g = at.hour * 4 + 3
            expected_spend = Decimal(5) if at.hour == 10 else Decimal(g)
            assert (row.spend, row.impressions, row.clicks) == (expected_spend, g * 100, g * 10)
            assert (row.conversions, row.revenue) == (Decimal(g) / 4, Decimal(g * 2))
            assert row.currency == acct["currency"]
        assert {(r.spend, r.impressions, r.currency) for r in finals} == {
            (Decimal(1000), 99999, acct["currency"])
        }
        hours = sorted({local(r.captured_at, timezone).hour for r in slots})
        assert hours == list(range(24))
    if timezone == "Asia/Kolkata":
        assert {r.captured_at.astimezone(UTC).minute for r in rows if r.metrics_date == acct["old"]} == {
            15,
            30,
        }
    # Yesterday is still being finalised: untouched.
    assert len([r for r in rows if r.metrics_date == acct["yesterday"]]) == 2 * 97


async def test_a_second_run_changes_nothing(accounts: dict[str, Any]) -> None:
    await scheduled_compaction({}, tick=None)
    before = {tz: await snapshot_rows(a["conn"]) for tz, a in accounts.items()}
    again = await scheduled_compaction({}, tick=None)
    assert again == {"days": 0, "failed_connections": 0, "rows_before": 0, "rows_after": 0, "rows_removed": 0}
    assert {tz: await snapshot_rows(a["conn"]) for tz, a in accounts.items()} == before


async def test_days_are_compacted_once_then_left_behind_the_watermark(accounts: dict[str, Any]) -> None:
    from core.compaction import compact_all

    # One connection per transaction: the same outcome as the whole fleet at once.
    stats = await compact_all(chunk=1)
    assert stats == {
        "days": 4,
        "failed_connections": 0,
        "rows_before": 776,
        "rows_after": 200,
        "rows_removed": 576,
    }
    for timezone, acct in accounts.items():
        (row,) = await fetch_all("SELECT compacted_through FROM connections WHERE id = :c", c=acct["conn"])
        # Everything before the account's yesterday is folded; yesterday is still being finalised.
        assert row.compacted_through == acct["yesterday"] - timedelta(days=1), timezone
    # A backfill rewriting an old day writes it at its end only: nothing to fold, nothing re-read.
    acct = accounts["UTC"]
    async with session_scope() as session:
        await session.execute(
            text(FINAL),
            {
                "c": acct["conn"],
                "day": acct["missed"] - timedelta(days=1),
                "at": end_of_day(acct["missed"] - timedelta(days=1), "UTC"),
                "currency": "USD",
            },
        )
    assert await compact_all() == {
        "days": 0,
        "failed_connections": 0,
        "rows_before": 0,
        "rows_after": 0,
        "rows_removed": 0,
    }


async def test_days_in_several_partitions_and_the_default_one_are_compacted_together(
    metricx_env: Any,
) -> None:
    """Pending days in two months' partitions and one long ago (in the DEFAULT partition): each keeps
    its hourly rows, whichever partition holds it, and a second run finds nothing left."""
    async with session_scope() as session:
        await session.execute(text("DELETE FROM metric_snapshots"))
    conn = await make_account("UTC", "USD")
    today = datetime.now(UTC).date()
    days = [date(2001, 5, 4), today - timedelta(days=45), today - timedelta(days=10)]  # 35 days: 2 months
    for day in days:
        await add_day(conn, day, "UTC", "USD")
    in_default = await fetch_all(
        "SELECT count(*) AS n FROM metric_snapshots_default WHERE metrics_date = :d", d=days[0]
    )
    assert in_default[0].n == 2 * 97

    from core.compaction import compact_all

    # 3 days x 2 entities x (96 slots + final row) -> 24 + final row
    assert await compact_all() == {
        "days": 3,
        "failed_connections": 0,
        "rows_before": 582,
        "rows_after": 150,
        "rows_removed": 432,
    }
    rows = await snapshot_rows(conn)
    for day in days:
        assert len([r for r in rows if r.metrics_date == day]) == 2 * 25, day
    assert (await compact_all())["rows_removed"] == 0
