"""The metrics API without ``level`` reads a Shopify store's primary series: net sales, not refunds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from core.testing.harness import enqueue_sync_job

OPERATOR = {"Authorization": "Bearer test-operator-key"}


@pytest.fixture
async def api(metricx_env: Any) -> AsyncIterator[httpx.AsyncClient]:
    from core.testing.harness import create_api as create_app

    app = create_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield client
    await app.state.resources.aclose()


async def test_default_metrics_are_net_sales(
    api: httpx.AsyncClient,
    new_shop: Any,
    shop_connection: Any,
    shopify_sim: Any,
    run_worker: Any,
    redis_client: Any,
) -> None:
    spec = new_shop(products=5, customers=8, orders=60, days=20)
    ws, conn = await shop_connection(spec)
    await enqueue_sync_job(str(conn), str(ws), backfill=True, redis=redis_client)
    await run_worker()
    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)  # today, in a realtime sync
    await run_worker()
    key = await api.post(f"/v1/workspaces/{ws}/api-keys", json={"name": "t"}, headers=OPERATOR)
    assert key.status_code == 201, key.text
    headers = {"Authorization": f"Bearer {key.json()['key']}"}
    daily = shopify_sim.truth(spec.domain)["daily"]
    # days with refunds, so net sales and refunds differ (the old default returned the refunds)
    refunded = sorted(d for d, v in daily.items() if Decimal(v["refunds"]) != 0)
    assert refunded
    got = await api.get(
        f"/v1/workspaces/{ws}/connections/{conn}/metrics",
        params={"start": min(daily), "end": max(daily), "limit": 100},
        headers=headers,
    )
    assert got.status_code == 200, got.text
    page = got.json()
    assert page["level"] == "store"
    by_day = {row["metrics_date"]: row for row in page["items"]}
    for day in refunded:
        assert Decimal(str(by_day[day]["revenue"])) == Decimal(daily[day]["net_sales"]), day
        assert Decimal(str(by_day[day]["conversions"])) == daily[day]["orders"]
    intraday = await api.get(f"/v1/workspaces/{ws}/connections/{conn}/metrics/intraday", headers=headers)
    assert intraday.json()["level"] == "store"
