"""Bulk operations end to end against the simulator: the lifecycle as the fixture shows it, backfills
read by one operation, one operation per shop, failures, partial data, expiring URLs; refunds and
their transactions read past the first page (paged and in bulk)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from metricx_shopify import queries
from metricx_shopify.bulk import CURRENT, POLL, RUN, BulkPartialData
from metricx_shopify.client import ShopifyClient
from metricx_shopify.jobs import enqueue_store_sync
from metricx_shopify.provider import ShopifyProvider
from metricx_shopify.settings import ShopifySettings
from metricx_shopify.simulator import ShopSpec, SimState, create_app
from shopify_helpers import fetch_all, fetch_one, same_shape
from sqlalchemy import text

from core import (
    AccountRef,
    ConfigError,
    Credentials,
    MetricRecord,
    RateLimited,
    SyncMode,
    SyncWindow,
    provider_context,
)

FIXTURE = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "bulk_operation_orders.json").read_text()
)
SPEC = ShopSpec("bulk-shop.myshopify.com", seed=11, products=4, customers=20, orders=120, days=40)
ENDPOINT = "http://sim.test/admin/api/2026-10/graphql.json"


def _settings(**overrides: Any) -> ShopifySettings:
    return ShopifySettings(
        base_url="http://sim.test", bulk_poll_s=0.01, bulk_busy_wait_s=0, retry_backoff_s=0.01, **overrides
    )


class Shop:
    """An in-process simulator with one shop, and clients of it."""

    def __init__(self, redis: Any, spec: ShopSpec = SPEC) -> None:
        self.spec = spec
        self.sim = SimState(shops=(spec,), plan="plus")
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(self.sim)))
        self.redis = redis
        self.account = AccountRef("c", "w", spec.domain, currency=spec.currency)

    def ctx(self) -> Any:
        return provider_context(
            redis=self.redis, client=self.http, provider="shopify", account=uuid.uuid4().hex
        )

    def client(self, **settings: Any) -> ShopifyClient:
        return ShopifyClient(self.ctx(), self.account, Credentials(self.spec.token), _settings(**settings))

    async def gql(self, document: str, **variables: Any) -> dict[str, Any]:
        response = await self.http.post(
            ENDPOINT,
            json={"query": document, "variables": variables},
            headers={"X-Shopify-Access-Token": self.spec.token},
        )
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        return body

    async def metrics(self, mode: SyncMode, days: int = 45) -> dict[tuple[str, str], MetricRecord]:
        tz = self.spec.timezone
        today = datetime.now(ZoneInfo(tz)).date()
        window = SyncWindow(mode, today - timedelta(days=days), today, tz)
        provider = ShopifyProvider(_settings())
        records = [
            r
            async for batch in provider.fetch_metrics(
                self.ctx(), self.account, Credentials(self.spec.token), window
            )
            for r in batch
        ]
        return {(r.level, r.metrics_date.isoformat()): r for r in records}


def _assert_truth(records: dict[tuple[str, str], MetricRecord], truth: dict[str, Any]) -> None:
    assert truth["daily"]
    for day, want in truth["daily"].items():
        if ("store", day) not in records:
            continue  # older than the window
        assert records[("store", day)].revenue == Decimal(want["net_sales"]), day
        assert records[("store", day)].conversions == want["orders"], day
        assert records[("store_refunds", day)].revenue == Decimal(want["refunds"]), day
        assert records[("store_refunds", day)].conversions == want["refunded_orders"], day


async def test_the_simulator_answers_the_bulk_lifecycle_as_the_fixture_shows(redis_client: Any) -> None:
    shop = Shop(redis_client)
    inner = queries.bulk_orders("orders", "updated_at:>='2000-01-01T00:00:00Z'")
    run = await shop.gql(RUN, query=inner)
    same_shape(FIXTURE["run"], run)
    busy = await shop.gql(RUN, query=inner)
    same_shape(FIXTURE["run_while_running"], busy)
    assert busy["data"]["bulkOperationRunQuery"]["userErrors"][0]["code"] == "OPERATION_IN_PROGRESS"
    op_id = run["data"]["bulkOperationRunQuery"]["bulkOperation"]["id"]
    running = await shop.gql(POLL, id=op_id)
    same_shape(FIXTURE["polls"][1], running)
    current = await shop.gql(CURRENT)
    same_shape(FIXTURE["current_running"], current)
    assert current["data"]["currentBulkOperation"]["query"] == inner  # how a retry recognises its own
    done = await shop.gql(POLL, id=op_id)
    same_shape(FIXTURE["polls"][2], done)
    assert done["data"]["node"]["status"] == "COMPLETED"
    lines = (await shop.http.get(done["data"]["node"]["url"])).text.splitlines()
    first = json.loads(lines[0])
    same_shape({k: v for k, v in FIXTURE["jsonl"][3].items() if k in first}, first)
    assert json.loads(lines[1])["__parentId"] == first["id"]  # grouped: its line items follow it
    # a connection inside a list field is refused, word for word as Shopify refuses it
    nested = "{ orders { nodes { id refunds { transactions { nodes { id } } } } } }"
    refused = await shop.gql(RUN, query=nested)
    assert refused == FIXTURE["run_connection_in_list"]
    # a failed operation, as the fixture's
    shop.sim.add_faults([{"kind": "bulk_failed", "error_code": "ACCESS_DENIED"}])
    op = (await shop.gql(RUN, query=inner))["data"]["bulkOperationRunQuery"]["bulkOperation"]
    await shop.gql(POLL, id=op["id"])
    failed = await shop.gql(POLL, id=op["id"])
    same_shape(FIXTURE["failed_access_denied"], failed)
    assert failed["data"]["node"]["errorCode"] == "ACCESS_DENIED"


async def test_a_backfill_window_is_one_bulk_operation_and_equals_the_shops_truth(redis_client: Any) -> None:
    shop = Shop(redis_client)
    truth = shop.sim.shop_truth(SPEC.domain)
    assert truth["kinds"]["multi_currency_refunded"] > 0 and truth["kinds"]["cancelled"] > 0
    backfill = await shop.metrics(SyncMode.backfill)
    stats = shop.sim.stats
    assert (stats["bulk_operations"], stats["bulk_downloads"], stats["list_orders"]) == (1, 1, 0)
    _assert_truth(backfill, truth)
    # an attribution window of the same days pages, and agrees with the bulk read to the cent
    attribution = await shop.metrics(SyncMode.attribution)
    assert shop.sim.stats["list_orders"] > 0 and shop.sim.stats["bulk_operations"] == 1
    assert {k: (r.revenue, r.conversions) for k, r in attribution.items()} == {
        k: (r.revenue, r.conversions) for k, r in backfill.items()
    }


async def test_one_bulk_operation_per_shop_a_retry_adopts_its_own(redis_client: Any) -> None:
    shop = Shop(redis_client)
    other = await shop.gql(RUN, query="{ orders { nodes { id } } }")  # another sync's operation
    assert other["data"]["bulkOperationRunQuery"]["userErrors"] == []
    client = shop.client()
    with pytest.raises(RateLimited, match=r"another bulk operation .* is running on bulk-shop"):
        [o async for o in client.bulk("order_metrics", "updated_at:>='2000-01-01T00:00:00Z'")]
    # the other one finishes; this sync's own operation, left running by a try that died, is adopted
    await shop.gql(POLL, id=other["data"]["bulkOperationRunQuery"]["bulkOperation"]["id"])
    await shop.gql(POLL, id=other["data"]["bulkOperationRunQuery"]["bulkOperation"]["id"])
    search = "updated_at:>='2000-01-01T00:00:00Z'"
    mine = await shop.gql(RUN, query=queries.bulk_orders("order_metrics", search))
    assert mine["data"]["bulkOperationRunQuery"]["userErrors"] == []
    orders = [o async for o in client.bulk("order_metrics", search)]
    assert len(orders) == SPEC.orders and shop.sim.stats["bulk_operations"] == 2  # none started anew


async def test_a_denied_operation_is_a_config_error_and_an_expired_url_is_asked_for_again(
    redis_client: Any,
) -> None:
    shop = Shop(redis_client)
    client = shop.client()
    shop.sim.add_faults([{"kind": "bulk_failed", "error_code": "ACCESS_DENIED"}])
    with pytest.raises(ConfigError, match=r"ACCESS_DENIED.*re-install the app"):
        [o async for o in client.bulk("orders", "updated_at:>='2000-01-01T00:00:00Z'")]
    shop.sim.add_faults([{"kind": "bulk_url_expired", "count": 2}])
    orders = [o async for o in client.bulk("orders", "updated_at:>='2000-01-01T00:00:00Z'")]
    assert sorted(int(o["id"]) for o in orders) == sorted(shop.sim.shops[SPEC.domain].orders)
    assert shop.sim.stats["bulk_downloads"] == 1  # two expired URLs, then a fresh one downloaded once


async def test_partial_data_yields_only_whole_orders_then_a_retryable_error(redis_client: Any) -> None:
    shop = Shop(redis_client)
    shop.sim.add_faults([{"kind": "bulk_failed", "error_code": "TIMEOUT", "partial_orders": 7}])
    got: list[dict[str, Any]] = []
    with pytest.raises(BulkPartialData, match=r"failed \(TIMEOUT\) after 7 complete orders.*retry"):
        async for order in shop.client().bulk("orders", "updated_at:>='2000-01-01T00:00:00Z'"):
            got.append(order)
    rows = shop.sim.shops[SPEC.domain].orders
    assert len(got) == 7  # the eighth order of the file was cut off before its line items: not handed over
    for order in got:
        assert [int(li["id"]) for li in order["line_items"]] == [
            li["id"] for li in rows[int(order["id"])]["line_items"]
        ]


def _many_refunds(sim: SimState, domain: str) -> int:
    """An order with five refunds, one of them in seven transactions: more than every inline page."""
    shop = sim.shops[domain]
    order = next(
        o
        for o in sorted(shop.orders.values(), key=lambda o: o["id"])
        if not (o["test"] or o["cancelled_at"] or o["refunds"]) and o["financial_status"] == "paid"
    )
    for _ in range(5):
        sim.refund(domain, order["id"], "1.00")
    first = order["refunds"][0]
    tx = first["transactions"][0]
    first["transactions"] = [
        {**tx, "id": shop.new_id(), "amount": "0.50", "shop_amount": "0.50", "currency": order["currency"]}
        for _ in range(7)
    ]
    return int(order["id"])


async def test_refunds_and_their_transactions_are_read_past_the_first_page(redis_client: Any) -> None:
    shop = Shop(redis_client)
    order_id = _many_refunds(shop.sim, SPEC.domain)
    truth = shop.sim.shop_truth(SPEC.domain)
    client = shop.client(page_size=20)
    for resource in ("orders", "order_metrics"):
        rows = [r async for page in client.iterate(resource, None) for r in page.rows]
        [order] = [r for r in rows if int(r["id"]) == order_id]
        assert len(order["refunds"]) == 5 > queries.INLINE_REFUNDS
        assert [len(r["transactions"]) for r in order["refunds"]] == [7, 1, 1, 1, 1]
    assert sum(Decimal(tx["amount"]) for r in order["refunds"] for tx in r["transactions"]) == Decimal("7.50")
    # in bulk, the same refunds arrive with the order (its transactions list)
    [bulk] = [
        o
        async for o in client.bulk("orders", "updated_at:>='2000-01-01T00:00:00Z'")
        if int(o["id"]) == order_id
    ]
    assert sum(Decimal(tx["amount"]) for r in bulk["refunds"] for tx in r["transactions"]) == Decimal("7.50")
    # and the days agree with the simulator's truth both ways
    _assert_truth(await shop.metrics(SyncMode.attribution), truth)
    _assert_truth(await shop.metrics(SyncMode.backfill), truth)


async def test_a_store_sync_stores_only_the_whole_orders_of_a_partial_bulk_result(
    new_shop: Any, shop_connection: Any, shopify_sim: Any, run_worker: Any, redis_client: Any
) -> None:
    spec = new_shop(
        seed=77, products=3, customers=5, orders=40
    )  # its own people (see test_shopify_compliance)
    ws, conn = await shop_connection(spec)
    shopify_sim.control("faults", kind="bulk_failed", error_code="TIMEOUT", partial_orders=12, count=None)
    await enqueue_store_sync(str(conn), str(ws), redis=redis_client)
    await run_worker()
    stored = await fetch_all(
        "SELECT o.shopify_id, count(li.id) AS items FROM shopify_orders o "
        "LEFT JOIN shopify_order_line_items li ON li.order_id = o.id "
        "WHERE o.connection_id = :c GROUP BY o.shopify_id",
        c=conn,
    )
    orders = shopify_sim.state.shops[spec.domain].orders
    assert len(stored) == 12
    assert all(r.items == len(orders[r.shopify_id]["line_items"]) for r in stored)  # never half an order
    run = (await fetch_all("SELECT * FROM sync_runs WHERE connection_id = :c ORDER BY started_at", c=conn))[0]
    assert run.status != "complete" and "after 12 complete orders" in run.error_message
    connection = await fetch_one("SELECT * FROM connections WHERE id = :c", c=conn)
    assert (
        "after 12 complete orders" in connection.last_sync_error and connection.last_error_kind == "transient"
    )
    shopify_sim.state.clear_faults()
    await enqueue_store_sync(str(conn), str(ws), redis=redis_client)
    await run_worker()
    count = await fetch_one("SELECT count(*) AS n FROM shopify_orders WHERE connection_id = :c", c=conn)
    assert count.n == len(orders)
    # Simulated shops share their customers' ids: leave none behind for test_shopify_compliance's
    # search of every table.
    from core.testing.harness import session_scope

    async with session_scope() as session:
        for table in ("shopify_order_line_items", "shopify_orders", "shopify_customers"):
            await session.execute(text(f"DELETE FROM {table} WHERE connection_id = :c"), {"c": conn})


@pytest.mark.slow
async def test_a_backfill_through_a_real_worker_reads_by_bulk_and_the_api_shows_the_truth(
    new_shop: Any,
    shop_connection: Any,
    shopify_sim: Any,
    shopify_env: dict[str, str],
    worker_process: Any,
    redis_client: Any,
) -> None:
    import asyncio
    from datetime import date

    from core.testing.harness import create_api, enqueue_sync_job

    spec = new_shop(products=3, customers=10, orders=400, days=85, timezone="Europe/Berlin", currency="EUR")
    _many_refunds(shopify_sim.state, spec.domain)  # and one order with refunds past every inline page
    truth = shopify_sim.truth(spec.domain)
    kinds = ("cancelled", "voided", "pending", "edited", "multi_currency_refunded")
    assert all(truth["kinds"][k] > 0 for k in kinds), truth["kinds"]
    ws, conn = await shop_connection(spec)
    before = shopify_sim.stats()["stats"]
    worker_process(**shopify_env)
    await enqueue_sync_job(str(conn), str(ws), backfill=True, redis=redis_client)
    deadline = asyncio.get_running_loop().time() + 60
    while not await fetch_all(
        "SELECT 1 FROM connections WHERE id = :c AND backfill_completed_at IS NOT NULL", c=conn
    ):
        assert asyncio.get_running_loop().time() < deadline, "the backfill did not finish"
        await asyncio.sleep(0.2)
    after = shopify_sim.stats()["stats"]
    # the backfill's windows were read by bulk operations, none by paginated order queries
    assert after["bulk_operations"] - before.get("bulk_operations", 0) >= 1
    assert after["bulk_downloads"] - before.get("bulk_downloads", 0) >= 1
    assert after.get("list_orders", 0) == before.get("list_orders", 0)
    ops = [o for o in shopify_sim.state.bulk_ops.values() if o["domain"] == spec.domain]
    assert ops and all(o["status"] == "COMPLETED" for o in ops)

    app = create_api()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as api:
        operator = {"Authorization": "Bearer test-operator-key"}
        key = await api.post(f"/v1/workspaces/{ws}/api-keys", json={"name": "t"}, headers=operator)
        got = await api.get(
            f"/v1/workspaces/{ws}/connections/{conn}/metrics",
            params={"start": min(truth["daily"]), "end": max(truth["daily"]), "limit": 200},
            headers={"Authorization": f"Bearer {key.json()['key']}"},
        )
    await app.state.resources.aclose()
    assert got.status_code == 200, got.text
    api_days = {r["metrics_date"]: r for r in got.json()["items"]}
    today = datetime.now(ZoneInfo(spec.timezone)).date()
    compared = 0
    for day, want in truth["daily"].items():
        if date.fromisoformat(day) >= today:
            continue  # today belongs to the realtime sync, not the backfill
        assert Decimal(str(api_days[day]["revenue"])) == Decimal(want["net_sales"]), day
        assert Decimal(str(api_days[day]["conversions"])) == want["orders"], day
        compared += 1
    assert compared >= 60
    # every kind of order is on a day compared above (edited ones with their edited totals)
    tz = ZoneInfo(spec.timezone)
    orders = [o for o in shopify_sim.state.shops[spec.domain].orders.values() if not o["test"]]
    of_kind = {
        "cancelled": [o for o in orders if o["cancelled_at"]],
        "voided": [o for o in orders if o["financial_status"] == "voided"],
        "pending": [o for o in orders if o["financial_status"] in ("pending", "authorized")],
        "edited": [o for o in orders if o["tags"] == "edited"],
        "multi_currency_refunded": [o for o in orders if o["refunds"] and o.get("presentment_currency")],
    }
    for kind, found in of_kind.items():
        days = {datetime.fromisoformat(o["processed_at"]).astimezone(tz).date() for o in found}
        assert any(day < today for day in days), kind
