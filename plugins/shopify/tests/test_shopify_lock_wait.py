"""A realtime sync requested while the store sync holds the connection runs after it, using no try.

Before, the waiter raised ``Retry`` with a 2.5-7.5 s defer, each counted against
``max_tries=3``: a holder running longer than ~8-22 s dropped it ("max 3 retries
exceeded", no ``sync_runs`` row, connection ``idle``, no data for today).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from metricx_shopify.jobs import enqueue_store_sync
from metricx_shopify.settings import ShopifySettings
from shopify_helpers import fetch_all, fetch_one

from core.testing.harness import Settings, enqueue_sync_job, next_fire

RUNS = (
    "SELECT job_id, try_number, status, started_at, finished_at, rows_written FROM sync_runs "
    "WHERE job_id = :j ORDER BY try_number"
)


async def _until(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := await check():
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
async def test_a_realtime_sync_waits_for_a_long_store_sync_without_using_tries(
    new_shop: Any,
    shop_connection: Any,
    shopify_sim: Any,
    shopify_env: dict[str, str],
    worker_process: Any,
    redis_client: Any,
) -> None:
    spec = new_shop(products=5, customers=5, orders=400, days=5)  # 40+ pages
    ws, conn = await shop_connection(spec)
    shopify_sim.control("faults", kind="timeout", seconds=1.0, count=None)  # every call takes 1 s
    # paged, so the store sync is long (a bulk operation would read the 400 orders in a few calls)
    worker = worker_process(
        **shopify_env, METRICX_LOCK_WAIT_POLL_S="2", METRICX_SHOPIFY_BULK_STORE_SYNC="false"
    )
    store = await enqueue_store_sync(str(conn), str(ws), redis=redis_client)

    async def store_running() -> bool:
        return any(r.status == "running" for r in await fetch_all(RUNS, j=store["job_id"]))

    await _until(store_running, 30, "the store sync to start")
    realtime = await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    assert realtime["status"] == "enqueued"

    async def waiting() -> Any:
        return [r for r in await fetch_all(RUNS, j=realtime["job_id"]) if r.status == "waiting"]

    await _until(waiting, 30, "the realtime sync to wait")
    # hold the connection 25 s past the first wait: under the old retry rule the waiter's three
    # tries were gone after ~22 s at most
    await asyncio.sleep(25)
    assert (await fetch_one(RUNS, j=store["job_id"])).status == "running"
    shopify_sim.state.clear_faults()

    async def realtime_done() -> Any:
        runs = await fetch_all(RUNS, j=realtime["job_id"])
        return runs if any(r.status == "complete" for r in runs) else None

    runs = await _until(realtime_done, 90, "the realtime sync to complete")
    assert [(r.try_number, r.status) for r in runs] == [(0, "waited"), (1, "complete")]
    store_run = await fetch_one(RUNS, j=store["job_id"])
    assert store_run.status == "complete"
    # it ran after the holder finished, and waited at least the 25 s
    assert runs[1].started_at >= store_run.finished_at - timedelta(seconds=1)
    assert runs[0].finished_at - runs[0].started_at >= timedelta(seconds=25)
    assert worker.output().count("sync_waiting_for_lock") >= 5  # far more re-defers than tries
    assert "max 3 retries exceeded" not in worker.output()
    row = await fetch_one("SELECT sync_status, last_sync_error FROM connections WHERE id = :c", c=conn)
    assert (row.sync_status, row.last_sync_error) == ("idle", None)
    assert runs[1].rows_written > 0  # the realtime sync wrote today's numbers


def test_the_store_tick_never_starts_with_a_realtime_tick() -> None:
    # by construction: over a whole day no minute fires both default schedules
    store_cron = ShopifySettings.model_fields["sync_cron"].default
    realtime_cron = Settings.model_fields["cron_realtime"].default
    at = datetime(2026, 12, 2, tzinfo=UTC)
    store, realtime = set(), set()
    for fires, cron in ((store, store_cron), (realtime, realtime_cron)):
        t = at - timedelta(seconds=1)
        while (t := next_fire(cron, t)) < at + timedelta(days=1):
            fires.add(t)
    assert len(store) == 24 and len(realtime) == 96
    assert not store & realtime
