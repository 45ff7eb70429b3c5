"""Meta revises conversions for 28 days: through a real worker process, a 90-day backfill followed
by 30 simulated days of re-pull tiers (nightly days 1-7 by paged GETs, the weekly deep tier's days
8-28 by one async report run per level) leaves every day equal to the simulator's truth.

Time: the worker plans windows from the real clock, so the windows stay put while the simulator's
clock advances one day per step (``POST /_sim/clock``): every stored day keeps maturing at Meta
exactly as it would, and only the re-pull tiers can bring the newer values in.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from metricx_meta.simulator import SimState, create_app, seed_account, truth
from sqlalchemy import text
from test_meta_worker_e2e import assert_equal_to_truth, connection, stored

from core import Credentials
from core.testing.harness import (
    create_connection,
    create_workspace,
    enqueue_sync_job,
    is_deep_tier_day,
    local_today,
    session_scope,
)
from core.testing.http import serve_app
from core.testing.plugin import plugin_environment

pytestmark = pytest.mark.slow
TZ = "America/Los_Angeles"
ACCOUNT = "4001"
SIM_DAYS = 30


@pytest.fixture
def revising_sim(metricx_env: Any) -> Iterator[tuple[SimState, str, dict[str, str]]]:
    def accounts(today: date) -> list[Any]:
        return [
            seed_account(ACCOUNT, campaigns=2, adsets_per_campaign=2, ads_per_adset=2, seed=41, today=today)
        ]

    state = SimState(accounts, now=datetime.now(UTC))  # frozen: only /_sim/clock moves it
    with serve_app(create_app(state)) as url:
        env = {
            "METRICX_META_BASE_URL": url,
            "METRICX_META_ASYNC_FIRST_POLL_S": "0.05",
            "METRICX_META_ASYNC_POLL_INTERVAL_S": "0.2",
            "METRICX_META_MAX_RETRIES": "0",
        }
        with plugin_environment(env, redis_url=metricx_env.redis_url):
            yield state, url, env


async def deep_tier_connection(today: date) -> tuple[uuid.UUID, uuid.UUID]:
    """A connection whose weekly deep-tier weekday is today (the core spreads them by id)."""
    async with session_scope() as session:
        ws = await create_workspace(session, f"meta-revisions-{uuid.uuid4().hex[:6]}")
        while True:
            conn = await create_connection(
                session, ws.id, "meta", f"act_{ACCOUNT}", Credentials("sim-valid-token")
            )
            if is_deep_tier_day(conn.id, today):
                return ws.id, conn.id
            await session.execute(text("DELETE FROM connections WHERE id = :c"), {"c": conn.id})


async def wait_for_success(conn: uuid.UUID, count: int, timeout_s: float = 120) -> Any:
    deadline = time.monotonic() + timeout_s
    while (row := await connection(conn)).total_syncs_succeeded < count:
        assert time.monotonic() < deadline and row.sync_status != "error", row.last_sync_error
        await asyncio.sleep(0.1)
    return row


async def test_days_8_to_28_reach_metas_final_numbers(
    revising_sim: Any, worker_process: Any, redis_client: Any
) -> None:
    state, url, env = revising_sim
    worker_process(**env)
    today = local_today(TZ, datetime.now(UTC))
    ws, conn = await deep_tier_connection(today)

    await enqueue_sync_job(str(conn), str(ws), backfill=True, redis=redis_client)
    await wait_for_success(conn, 1)
    first, last = today - timedelta(days=90), today - timedelta(days=1)
    backfilled = await stored(conn)
    assert_equal_to_truth(state, ACCOUNT, backfilled, first, last)
    deep_days = {today - timedelta(days=d) for d in range(8, 29)}
    runs_before = len(state.runs)

    for day in range(1, SIM_DAYS + 1):
        httpx.post(f"{url}/_sim/clock", json={"advance_s": 86400}).raise_for_status()
        await enqueue_sync_job(str(conn), str(ws), force_refresh=True, redis=redis_client)
        await wait_for_success(conn, 1 + day)

    final = await stored(conn)
    # Every day of the 90 equals what Meta reports now, 30 days on: days 8-28 included.
    assert_equal_to_truth(state, ACCOUNT, final, first, last)
    assert truth(state, ACCOUNT, "ad", min(deep_days), max(deep_days))  # the deep days delivered
    for key, row in final.items():
        if key[2] in deep_days:
            assert row.conversions >= backfilled[key].conversions
    grew = sum(final[k].conversions - backfilled[k].conversions for k in final if k[2] in deep_days)
    assert grew > 0  # days 8-28 were immature at the backfill: only the deep tier brought the rest
    assert (
        sum(final[k].revenue for k in final if k[2] in deep_days)
        > sum(backfilled[k].revenue for k in backfilled if k[2] in deep_days)
        >= Decimal(0)
    )
    # The deep tier read days 8-28 as one async report run per level and job (no 7-day slices).
    deep_runs = [
        r for r in list(state.runs.values())[runs_before:] if (r.query.until - r.query.since).days == 20
    ]
    assert len(deep_runs) == 3 * SIM_DAYS
    assert {(r.query.since, r.query.until) for r in deep_runs} == {(min(deep_days), max(deep_days))}
