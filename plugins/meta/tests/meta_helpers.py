"""Helpers shared by the Meta plugin tests (a uniquely named module: other plugins have conftests too)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from metricx_meta.simulator import SimState, seed_account, truth

from core import AccountRef, MetricRecord, SyncMode, SyncWindow

BASE_URL = "http://graph.test"
# 10:30 in Los Angeles, 03:30 next day in Tokyo, 07:30 next day in Auckland.
NOW = datetime(2026, 11, 20, 18, 30, tzinfo=UTC)
ACCOUNTS = {"1001": "America/Los_Angeles", "2002": "Asia/Tokyo", "3003": "Pacific/Auckland"}
CURRENCIES = {"1001": "USD", "2002": "JPY", "3003": "NZD"}


def make_accounts(today: date) -> list[Any]:
    return [
        seed_account(
            account_id, timezone=tz, currency=CURRENCIES[account_id], seed=int(account_id), today=today
        )
        for account_id, tz in ACCOUNTS.items()
    ]


def ref(account_id: str = "1001") -> AccountRef:
    return AccountRef("conn-1", "ws-1", f"act_{account_id}", timezone=ACCOUNTS[account_id])


def local_today(sim: SimState, account_id: str) -> date:
    return sim.now().astimezone(ZoneInfo(ACCOUNTS[account_id])).date()


def window(mode: SyncMode, start: date, end: date, account_id: str = "1001") -> SyncWindow:
    return SyncWindow(mode=mode, start=start, end=end, timezone=ACCOUNTS[account_id])


async def collect(batches: AsyncIterator[list[Any]]) -> list[list[Any]]:
    return [batch async for batch in batches]


Key = tuple[str, str, str]
Values = tuple[Decimal, int, int, Decimal, Decimal]


def by_key(records: list[MetricRecord]) -> dict[Key, Values]:
    out: dict[Key, Values] = {}
    for r in records:
        key = (r.level, r.entity_external_id, r.metrics_date.isoformat())
        out[key] = (r.spend, r.impressions, r.clicks, r.conversions, r.revenue)
    return out


def truth_by_key(sim: SimState, account_id: str, start: date, end: date) -> dict[Key, Values]:
    out: dict[Key, Values] = {}
    for level in ("campaign", "adset", "ad"):
        for row in truth(sim, account_id, level, start, end):
            out[(level, row["entity_id"], row["date"])] = (
                Decimal(row["spend"]),
                row["impressions"],
                row["clicks"],
                Decimal(row["conversions"]),
                Decimal(row["revenue"]),
            )
    return out


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def load_fixture(name: str) -> dict[str, Any]:
    """One fixture file: ``_source`` (its public origin), ``status``, ``headers``, ``body``."""
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    assert data.get("_source"), f"{name} names no public source"
    return data


def all_fixtures() -> list[str]:
    return sorted(p.name for p in FIXTURES.glob("*.json"))
