"""The store sync through the real arq worker against the simulator over HTTP, PostgreSQL and Redis."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from metricx_shopify.jobs import enqueue_store_sync
from metricx_shopify.settings import get_shopify_settings
from shopify_helpers import fetch_all, fetch_one
from sqlalchemy import text

from core.testing.harness import JobRequest, enqueue_many, enqueue_sync_job, session_scope

OPERATOR = {"Authorization": "Bearer test-operator-key"}

COUNTS = """
SELECT (SELECT count(*) FROM shopify_products WHERE connection_id = :c) AS products,
       (SELECT count(*) FROM shopify_customers WHERE connection_id = :c) AS customers,
       (SELECT count(*) FROM shopify_orders WHERE connection_id = :c) AS orders,
       (SELECT count(*) FROM shopify_order_line_items WHERE connection_id = :c) AS line_items
"""
CONN = "SELECT * FROM connections WHERE id = :c"
RUNS = "SELECT * FROM sync_runs WHERE connection_id = :c ORDER BY started_at"


def _counts(truth: dict[str, Any]) -> tuple[int, int, int, int]:
    return truth["products"], truth["customers"], truth["orders"], truth["line_items"]


async def test_full_then_incremental_sync_picks_up_only_a_refund(
    new_shop: Any, shop_connection: Any, shopify_sim: Any, run_worker: Any, redis_client: Any
) -> None:
    spec = new_shop(products=12, customers=15, orders=45, timezone="Asia/Tokyo", currency="JPY")
    ws, conn = await shop_connection(spec)
    await enqueue_store_sync(str(conn), str(ws), redis=redis_client)
    await run_worker()
    truth = shopify_sim.truth(spec.domain)
    row = await fetch_one(COUNTS, c=conn)
    assert tuple(row) == _counts(truth)
    connection = await fetch_one(CONN, c=conn)
    assert connection.sync_status == "idle" and connection.last_sync_error is None
    assert (connection.timezone, connection.currency) == ("Asia/Tokyo", "JPY")  # shop facts on the connection
    [run] = await fetch_all(RUNS, c=conn)
    assert (run.mode, run.status, run.slices_done, run.slices_total) == ("store", "complete", 3, 3)
    assert run.rows_written == truth["products"] + truth["customers"] + truth["orders"]

    # an old order is refunded: its updated_at moves; the next sync reads that one row and nothing else
    order_id = min(shopify_sim.state.shops[spec.domain].orders)
    refunded = shopify_sim.state.refund(spec.domain, order_id)
    await enqueue_store_sync(str(conn), str(ws), redis=redis_client)
    await run_worker()
    second = (await fetch_all(RUNS, c=conn))[-1]
    assert (second.status, second.rows_written) == ("complete", 1)
    assert tuple(await fetch_one(COUNTS, c=conn)) == _counts(shopify_sim.truth(spec.domain))
    stored = await fetch_one(
        "SELECT financial_status, total_refunded, total_price FROM shopify_orders "
        "WHERE connection_id = :c AND shopify_id = :o",
        c=conn,
        o=order_id,
    )
    assert stored.financial_status == "refunded"
    assert stored.total_refunded == stored.total_price == Decimal(refunded["total_price"])


async def test_store_metrics_match_the_shops_daily_truth(
    new_shop: Any, shop_connection: Any, shopify_sim: Any, run_worker: Any, redis_client: Any
) -> None:
    # cancelled/voided, pending, authorized-only, edited and multi-currency refunded orders are present
    spec = new_shop(products=5, customers=8, orders=160, days=20, timezone="America/Los_Angeles")
    truth = shopify_sim.truth(spec.domain)
    kinds = truth["kinds"]
    assert all(kinds[k] > 0 for k in ("cancelled", "voided", "pending", "edited", "multi_currency_refunded"))
    ws, conn = await shop_connection(spec)
    # the backfill writes the days up to yesterday, a realtime sync today (shop-local days)
    await enqueue_sync_job(str(conn), str(ws), backfill=True, redis=redis_client)
    await run_worker()
    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    await run_worker()
    assert (await fetch_one(CONN, c=conn)).sync_status == "idle"
    rows = await fetch_all(
        "SELECT e.level, s.metrics_date, s.conversions, s.revenue, s.spend FROM metric_snapshots s "
        "JOIN entities e ON e.id = s.entity_id WHERE s.connection_id = :c",
        c=conn,
    )
    by_level: dict[str, dict[str, Any]] = {}
    for r in rows:
        by_level.setdefault(r.level, {})[r.metrics_date.isoformat()] = r
    store, refunds, pending = by_level["store"], by_level["store_refunds"], by_level["store_pending"]
    # the simulator's truth comes from its own order model (not this plugin's formula)
    daily = shopify_sim.truth(spec.domain)["daily"]
    assert daily and set(daily) <= set(store)
    for day, want in daily.items():
        assert store[day].conversions == want["orders"], day
        assert store[day].revenue == Decimal(want["net_sales"]), day
        assert store[day].spend == 0
        assert refunds[day].revenue == Decimal(want["refunds"]), day
        assert refunds[day].conversions == want["refunded_orders"], day
        assert (pending[day].conversions, pending[day].revenue) == (
            want["pending_orders"],
            Decimal(want["pending_sales"]),
        ), day
    quiet = set(store) - set(daily)
    assert all(store[d].conversions == 0 and store[d].revenue == 0 for d in quiet)


async def test_cost_pacing_never_empties_the_bucket_and_survives_injected_throttles(
    new_shop: Any,
    shop_connection: Any,
    shopify_sim: Any,
    run_worker: Any,
    redis_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # pages of up to 10 orders cost far more than the bucket restores in a second: only pacing by
    # the answers' throttleStatus (shared limiter) keeps every query within the bucket (paged: a
    # first read of orders would otherwise be one bulk operation)
    monkeypatch.setenv("METRICX_SHOPIFY_BULK_STORE_SYNC", "false")
    get_shopify_settings.cache_clear()
    shopify_sim.control("points", maximum=1000, restore_rate=400)
    spec = new_shop(products=100, customers=120, orders=250)
    ws, conn = await shop_connection(spec)
    await enqueue_store_sync(str(conn), str(ws), redis=redis_client)
    await run_worker()
    stats = shopify_sim.stats()["stats"]
    assert stats["graphql"] >= 48
    assert stats.get("throttled", 0) == 0, stats
    assert tuple(await fetch_one(COUNTS, c=conn)) == _counts(shopify_sim.truth(spec.domain))
    run = (await fetch_all(RUNS, c=conn))[-1]
    assert run.status == "complete" and run.seconds_throttled > 0  # it did pace itself

    # THROTTLED inside an HTTP 200 for the next three queries: waited out, then the sync completes
    shopify_sim.control("faults", kind="throttle", count=3)
    shopify_sim.state.refund(spec.domain, min(shopify_sim.state.shops[spec.domain].orders))
    await enqueue_store_sync(str(conn), str(ws), redis=redis_client)
    await run_worker()
    assert shopify_sim.stats()["stats"]["throttled"] == 3
    run = (await fetch_all(RUNS, c=conn))[-1]
    assert (run.status, run.try_number, run.rows_written) == ("complete", 1, 1)
    assert tuple(await fetch_one(COUNTS, c=conn)) == _counts(shopify_sim.truth(spec.domain))


async def test_revoked_token_needs_reconnect(
    new_shop: Any, shop_connection: Any, run_worker: Any, redis_client: Any
) -> None:
    spec = new_shop(orders=5)
    ws, conn = await shop_connection(spec, token="shpat_revoked")
    await enqueue_store_sync(str(conn), str(ws), redis=redis_client)
    await run_worker()
    row = await fetch_one(CONN, c=conn)
    assert row.sync_status == "reconnect_required" and row.last_error_kind == "auth"
    assert "reconnect" in row.last_sync_error.lower() and "shpat_revoked" not in row.last_sync_error


async def test_a_malformed_order_is_a_clear_error_and_the_next_sync_resumes(
    new_shop: Any, shop_connection: Any, shopify_sim: Any, run_worker: Any, redis_client: Any
) -> None:
    spec = new_shop(products=3, customers=3, orders=25)
    ws, conn = await shop_connection(spec)
    # the first page served (products) carries a row whose id is not a number
    shopify_sim.control("faults", kind="malformed", count=1)
    await enqueue_store_sync(str(conn), str(ws), redis=redis_client)
    await run_worker()
    row = await fetch_one(CONN, c=conn)
    assert row.sync_status == "error" and row.last_error_kind == "payload"
    assert "id must be a number" in row.last_sync_error and "not-a-number" in row.last_sync_error
    assert tuple(await fetch_one(COUNTS, c=conn)) == (0, 0, 0, 0)  # nothing of the bad page is stored
    await enqueue_store_sync(str(conn), str(ws), redis=redis_client)
    await run_worker()
    assert (await fetch_one(CONN, c=conn)).sync_status == "idle"
    assert tuple(await fetch_one(COUNTS, c=conn)) == _counts(shopify_sim.truth(spec.domain))


async def test_a_refused_page_cursor_falls_back_to_the_stored_updated_at(
    new_shop: Any, shop_connection: Any, shopify_sim: Any, run_worker: Any, redis_client: Any
) -> None:
    from sqlalchemy import text

    from core.testing.harness import session_scope

    spec = new_shop(products=2, customers=2, orders=30)
    ws, conn = await shop_connection(spec)
    # an interrupted run whose stored page_info Shopify no longer accepts
    async with session_scope() as session:
        await session.execute(
            text(
                "INSERT INTO shopify_sync_state "
                "(workspace_id, connection_id, resource, run_max, page_info, job_id) "
                "VALUES (:w, :c, 'orders', now(), 'expired-cursor', 'an-earlier-job')"
            ),
            {"w": ws, "c": conn},
        )
    await enqueue_store_sync(str(conn), str(ws), redis=redis_client)
    await run_worker()
    assert (await fetch_one(CONN, c=conn)).sync_status == "idle"
    assert tuple(await fetch_one(COUNTS, c=conn)) == _counts(shopify_sim.truth(spec.domain))


async def test_without_read_all_orders_older_days_are_not_available_never_zero(
    new_shop: Any, shop_connection: Any, shopify_sim: Any, run_worker: Any, redis_client: Any
) -> None:
    from datetime import date, timedelta

    from core.testing.harness import create_api

    spec = new_shop(products=3, customers=5, orders=120, days=85, scopes=("read_orders", "read_products"))
    ws, conn = await shop_connection(spec)
    await enqueue_sync_job(str(conn), str(ws), backfill=True, redis=redis_client)
    await run_worker()
    assert (await fetch_one(CONN, c=conn)).sync_status == "idle"
    rows = await fetch_all(
        "SELECT s.metrics_date, s.conversions, s.revenue FROM metric_snapshots s "
        "JOIN entities e ON e.id = s.entity_id WHERE s.connection_id = :c AND e.level = 'store'",
        c=conn,
    )
    stored = {r.metrics_date: r for r in rows}
    daily = shopify_sim.truth(spec.domain)["daily"]
    old_days = [date.fromisoformat(d) for d in daily if date.fromisoformat(d) < min(stored)]
    assert old_days, "the shop has sales older than the 60 days the app may read"
    assert min(stored) >= max(old_days) and not any(d in stored for d in old_days)  # absent, not zero
    # the recent days hold the shop's truth (refunds of orders older than 60 days excepted: Shopify
    # hides those orders too, so compare from two days in)
    for day in (d for d in stored if d >= min(stored) + timedelta(days=2)):
        want = daily.get(day.isoformat())
        assert stored[day].revenue == (Decimal(want["net_sales"]) if want else 0), day

    # The API says so: the coverage lists the days beyond 60 as not available, with the reason,
    # and none as missing; the metrics of a range reaching back name them and hold no row for them.
    app = create_api()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as api:
        key = await api.post(f"/v1/workspaces/{ws}/api-keys", json={"name": "t"}, headers=OPERATOR)
        headers = {"Authorization": f"Bearer {key.json()['key']}"}
        cov = (await api.get(f"/v1/workspaces/{ws}/connections/{conn}/coverage", headers=headers)).json()
        assert cov["days_missing"] == 0, cov
        assert cov["days_unavailable"] in (30, 31), cov  # 90-day horizon, the last 59-60 whole days visible
        assert "read_all_orders" in cov["unavailable_reason"] and "not available" in cov["summary"]
        assert date.fromisoformat(cov["newest_unavailable"]) == min(stored) - timedelta(days=1)
        first, last = min(old_days), max(stored)
        got = await api.get(
            f"/v1/workspaces/{ws}/connections/{conn}/metrics",
            params={"start": first.isoformat(), "end": last.isoformat(), "limit": 200},
            headers=headers,
        )
        assert got.status_code == 200, got.text
        page = got.json()
        gone = [date.fromisoformat(d) for d in page["unavailable_days"]]
        assert set(old_days) <= set(gone) and max(gone) < min(stored)
        assert "read_all_orders" in page["unavailable_reason"]
        assert not {date.fromisoformat(r["metrics_date"]) for r in page["items"]} & set(gone)  # never zero
    await app.state.resources.aclose()

    # The reconciler does not queue backfills for them (the pass looks at the whole database: the
    # other tests' connections are paused), and a backfill asked for anyway fetches none of them.
    async with session_scope() as session:
        await session.execute(
            text("UPDATE connections SET status = 'paused' WHERE id != :c AND status = 'active'"), {"c": conn}
        )
    runs = "SELECT count(*) AS n FROM sync_runs WHERE connection_id = :c"
    before = (await fetch_one(runs, c=conn)).n
    for _ in range(2):
        await enqueue_many(
            redis_client, [JobRequest("scheduled_reconcile", f"reconcile:t:{uuid.uuid4().hex}")]
        )
        await run_worker()
    assert (await fetch_one(runs, c=conn)).n == before
    await enqueue_sync_job(str(conn), str(ws), backfill=True, slot="again", redis=redis_client)
    await run_worker()
    again = await fetch_one(
        "SELECT status, window_start FROM sync_runs WHERE connection_id = :c "
        "ORDER BY started_at DESC LIMIT 1",
        c=conn,
    )
    assert (again.status, again.window_start) == ("complete", None)  # no window left to fetch
