"""CSV export of the metrics routes, and today's workspace totals from the latest snapshot (never a sum)."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from core.plugins import get_registry
from tests.conftest import fetch_all
from tests.integration.test_api_support import api, connect, tenant

__all__ = ["api", "tenant"]  # fixtures
NUMBERS = ("spend", "impressions", "clicks", "conversions", "revenue")


def parse(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    return list(csv.DictReader(io.StringIO(response.text)))


def same(row: dict[str, str], item: dict[str, Any], columns: tuple[str, ...]) -> None:
    for column in columns:
        want = item[column]
        if column in ("spend", "conversions", "revenue"):
            assert Decimal(row[column]) == Decimal(str(want)), column
        else:
            assert row[column] == ("" if want is None else str(want)), column


async def test_metrics_csv_parses_and_matches_the_json(
    api: httpx.AsyncClient, tenant: Any, sim: Any, run_worker: Any
) -> None:
    conn = await connect(api, tenant, sim.url, backfill=True)
    await run_worker()
    url = tenant.url(f"/connections/{conn['id']}/metrics")
    end = datetime.now(UTC).date() - timedelta(days=1)
    params = {"start": (end - timedelta(days=9)).isoformat(), "end": end.isoformat(), "group_by": "entity"}
    body = (await api.get(url, params={**params, "limit": 200}, headers=tenant.headers)).json()
    assert body["total"] == 60 == len(body["items"])
    by_query = parse(await api.get(url, params={**params, "format": "csv"}, headers=tenant.headers))
    by_accept = parse(await api.get(url, params=params, headers={**tenant.headers, "Accept": "text/csv"}))
    assert by_query == by_accept and len(by_query) == body["total"]
    for row, item in zip(by_query, body["items"], strict=True):
        same(row, item, ("metrics_date", "entity_id", "external_id", "name", *NUMBERS))
        assert (row["connection_id"], row["level"], row["currency"]) == (conn["id"], "ad", "USD")

    daily = (await api.get(url, params={**params, "group_by": "level"}, headers=tenant.headers)).json()
    rows = parse(
        await api.get(url, params={**params, "group_by": "level", "format": "csv"}, headers=tenant.headers)
    )
    assert len(rows) == 10
    for row, item in zip(rows, daily["items"], strict=True):
        same(row, item, ("metrics_date", *NUMBERS))

    intraday = await api.get(f"{url}/intraday", params={"date": end.isoformat()}, headers=tenant.headers)
    points = parse(
        await api.get(
            f"{url}/intraday", params={"date": end.isoformat(), "format": "csv"}, headers=tenant.headers
        )
    )
    assert len(points) == len(intraday.json()["points"]) >= 1
    for row, point in zip(points, intraday.json()["points"], strict=True):
        assert datetime.fromisoformat(row["captured_at"]) == datetime.fromisoformat(point["captured_at"])
        same(row, point, NUMBERS[1:3])
    # JSON stays the default, also when asked for explicitly.
    explicit = await api.get(url, params={**params, "format": "json", "limit": 200}, headers=tenant.headers)
    assert explicit.json() == body


async def test_todays_total_is_the_latest_snapshot_not_a_sum(
    api: httpx.AsyncClient, tenant: Any, sim: Any, run_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.control(campaign_rows=True)
    # With campaign rows the campaign level is what covers all spend: the provider declares it.
    provider = get_registry().providers["testprovider"]
    monkeypatch.setattr(provider, "capabilities", replace(provider.capabilities, primary_level="campaign"))
    conn = await connect(api, tenant, sim.url)
    await api.post(
        tenant.url(f"/connections/{conn['id']}/sync"), json={"mode": "realtime"}, headers=tenant.headers
    )
    await run_worker()
    today = datetime.now(UTC).date()
    params = {"since": today.isoformat(), "until": today.isoformat()}
    first = (await api.get(tenant.url("/metrics/summary"), params=params, headers=tenant.headers)).json()
    truth = httpx.get(
        f"{sim.url}/_sim/truth", params={"account": conn["external_account_id"], **params}
    ).json()["days"][today.isoformat()]
    [usd] = first["currencies"]
    assert (
        Decimal(usd["ads"]["spend"]) == Decimal(truth["spend"])
        and usd["ads"]["impressions"] == truth["impressions"]
    )
    # A later "day so far" snapshot of every campaign, one more unit spent each: the day's value moves to it.
    await fetch_all(
        "INSERT INTO metric_snapshots (workspace_id, connection_id, entity_id, metrics_date, captured_at, "
        "spend, impressions, clicks, conversions, revenue, currency) "
        "SELECT s.workspace_id, s.connection_id, s.entity_id, s.metrics_date, "
        "s.captured_at + interval '15 minutes', s.spend + 1, s.impressions, s.clicks, s.conversions, "
        "s.revenue, s.currency FROM metric_snapshots s "
        "JOIN entities e ON e.id = s.entity_id WHERE s.connection_id = :c AND s.metrics_date = :d "
        "AND e.level = 'campaign' RETURNING 1",
        c=conn["id"],
        d=today,
    )
    second = (await api.get(tenant.url("/metrics/summary"), params=params, headers=tenant.headers)).json()
    assert Decimal(second["currencies"][0]["ads"]["spend"]) == Decimal(truth["spend"]) + 2  # two campaigns
    [provider] = second["providers"]
    assert (provider["provider"], provider["level"], provider["kind"]) == ("testprovider", "campaign", "ads")
    assert first["converted"] is None and first["missing_rates"] == []
