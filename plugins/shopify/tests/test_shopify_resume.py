"""A store sync whose worker is killed mid-way resumes from its checkpoint in a new worker process."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import pytest
from metricx_shopify.jobs import enqueue_store_sync
from shopify_helpers import fetch_all, fetch_one

pytestmark = pytest.mark.slow

STATE = "SELECT resource, rows_in_run, page_info FROM shopify_sync_state WHERE connection_id = :c"
COUNTS = """
SELECT (SELECT count(*) FROM shopify_orders WHERE connection_id = :c) AS orders,
       (SELECT count(DISTINCT shopify_id) FROM shopify_orders WHERE connection_id = :c) AS distinct_orders,
       (SELECT count(*) FROM shopify_order_line_items WHERE connection_id = :c) AS line_items,
       (SELECT count(*) FROM shopify_products WHERE connection_id = :c) AS products,
       (SELECT count(*) FROM shopify_customers WHERE connection_id = :c) AS customers
"""


async def _wait(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_killed_sync_resumes_from_its_checkpoint_without_duplicates(
    new_shop: Any,
    shop_connection: Any,
    shopify_sim: Any,
    shopify_env: dict[str, str],
    worker_process: Any,
    redis_client: Any,
) -> None:
    spec = new_shop(products=10, customers=10, orders=120)  # orders: 12 pages of 10
    ws, conn = await shop_connection(spec)
    shopify_sim.control("faults", kind="timeout", seconds=0.3, count=None)
    # the paginated read's page checkpoints (a first read of orders would otherwise run as a bulk operation)
    env = {**shopify_env, "METRICX_JOB_TIMEOUT_S": "8", "METRICX_SHOPIFY_BULK_STORE_SYNC": "false"}
    first = worker_process(**env)
    await enqueue_store_sync(str(conn), str(ws), redis=redis_client)

    async def orders_checkpointed() -> bool:
        rows = await fetch_all(STATE, c=conn)
        return any(r.resource == "orders" and r.rows_in_run >= 40 for r in rows)

    await _wait(orders_checkpointed, 60, "four pages of orders")
    first.stop(signal.SIGKILL)
    before = shopify_sim.stats()["stats"]
    stored_at_kill = (await fetch_one(COUNTS, c=conn)).orders
    assert 40 <= stored_at_kill < 120

    worker_process(**env)  # arq hands the job over once its in-progress key expires (timeout + 10 s)

    async def finished() -> Any:
        return await fetch_all(
            "SELECT try_number, rows_written FROM sync_runs WHERE connection_id = :c AND status = 'complete'",
            c=conn,
        )

    [run] = await _wait(finished, 90, "the resumed try to complete")
    assert run.try_number == 2
    after = shopify_sim.stats()["stats"]
    truth = shopify_sim.truth(spec.domain)
    counts = await fetch_one(COUNTS, c=conn)
    assert counts.orders == counts.distinct_orders == truth["orders"]
    assert (counts.line_items, counts.products, counts.customers) == (
        truth["line_items"],
        truth["products"],
        truth["customers"],
    )
    # the second try continued from the stored cursor: it read the remaining pages (plus at most
    # the page in flight when the worker died), not all twelve again, and started with a page_info
    resumed_pages = after["list_orders"] - before["list_orders"]
    assert resumed_pages <= 12 - stored_at_kill // 10 + 1
    assert after["page_info_requests"] > before.get("page_info_requests", 0)
    assert run.rows_written <= 120 - stored_at_kill + 10
    assert (
        await fetch_one("SELECT sync_status FROM connections WHERE id = :c", c=conn)
    ).sync_status == "idle"
