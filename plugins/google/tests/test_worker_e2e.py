"""Google Ads through the real engine and worker: PostgreSQL, Redis, and the simulator over real HTTP."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from metricx_google.simulator import (
    CHILD_NY_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_REFRESH_TOKEN,
    MANAGER_ID,
    SimState,
    create_app,
    truth,
)
from sqlalchemy import text

from core import Credentials
from core.testing.harness import (
    create_api,
    create_connection,
    create_workspace,
    enqueue_sync_job,
    local_today,
    session_scope,
)
from core.testing.http import serve_app
from core.testing.plugin import plugin_environment

TZ = "America/New_York"


@pytest.fixture
def google_sim(metricx_env: Any) -> Iterator[tuple[SimState, str, dict[str, str]]]:
    state = SimState(now=datetime.now(UTC))  # frozen: "today" stays the same day while the test runs
    with serve_app(create_app(state)) as url:
        env = {
            "METRICX_GOOGLE_BASE_URL": url,
            "METRICX_GOOGLE_TOKEN_URL": f"{url}/token",
            "METRICX_GOOGLE_CLIENT_ID": DEFAULT_CLIENT_ID,
            "METRICX_GOOGLE_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
        }
        with plugin_environment(env, redis_url=metricx_env.redis_url):
            yield state, url, env


@pytest.fixture
async def connection(google_sim: Any) -> AsyncIterator[tuple[uuid.UUID, uuid.UUID]]:
    async with session_scope() as session:
        ws = await create_workspace(session, "google-e2e")
        conn = await create_connection(
            session,
            ws.id,
            "google",
            CHILD_NY_ID,
            Credentials(refresh_token=DEFAULT_REFRESH_TOKEN),
            config={"login_customer_id": MANAGER_ID},
        )
    yield ws.id, conn.id


async def stored(connection_id: uuid.UUID) -> dict[tuple[str, str, date], Any]:
    """Each (level, entity, day)'s latest snapshot."""
    sql = text(
        "SELECT DISTINCT ON (s.entity_id, s.metrics_date) e.level, e.external_id, s.metrics_date, s.spend, "
        "s.impressions, s.clicks, s.conversions, s.revenue, s.currency FROM metric_snapshots s "
        "JOIN entities e ON e.id = s.entity_id WHERE s.connection_id = :c "
        "ORDER BY s.entity_id, s.metrics_date, s.captured_at DESC"
    )
    async with session_scope() as session:
        rows = (await session.execute(sql, {"c": connection_id})).all()
    return {(r.level, r.external_id, r.metrics_date): r for r in rows}


def assert_equal_to_truth(state: SimState, rows: dict[Any, Any], since: date, until: date) -> None:
    account = state.accounts[CHILD_NY_ID]
    for level in ("campaign", "ad_group", "ad"):
        expected = truth(account, level, since, until, state.now())
        got = {(ext, day): r for (lv, ext, day), r in rows.items() if lv == level and since <= day <= until}
        assert set(got) == set(expected), level
        for key, n in expected.items():
            r = got[key]
            assert r.impressions == n.impressions and r.clicks == n.clicks, key
            assert r.spend == Decimal(n.cost_micros).scaleb(-6), key
            assert r.conversions == n.conversions and r.revenue == n.conversions_value, key
        # and the sums, the way a dashboard would add them up
        assert sum(r.spend for r in got.values()) == sum(
            Decimal(n.cost_micros).scaleb(-6) for n in expected.values()
        )


async def status(connection_id: uuid.UUID) -> Any:
    async with session_scope() as session:
        return (
            await session.execute(text("SELECT * FROM connections WHERE id = :c"), {"c": connection_id})
        ).one()


async def test_backfill_attribution_realtime_through_a_manager(
    google_sim: Any, connection: Any, run_worker: Any, redis_client: Any
) -> None:
    state, url, _ = google_sim
    ws, conn = connection
    today = local_today(TZ, state.now())

    await enqueue_sync_job(str(conn), str(ws), backfill=True, redis=redis_client)
    await run_worker()
    row = await status(conn)
    assert row.sync_status == "idle", row.last_sync_error
    assert (row.timezone, row.currency) == (TZ, "USD")  # read from customer.time_zone / currency_code
    rows = await stored(conn)
    assert_equal_to_truth(state, rows, today - timedelta(days=90), today - timedelta(days=1))
    count_after_backfill = len(rows)

    # Late conversions arrive; the attribution re-sync overwrites the last 7 days, adding no rows.
    httpx.post(f"{url}/_sim/clock", json={"advance_s": 3 * 86400}).raise_for_status()
    await enqueue_sync_job(str(conn), str(ws), force_refresh=True, redis=redis_client)
    await run_worker()
    rows = await stored(conn)
    assert_equal_to_truth(state, rows, today - timedelta(days=7), today - timedelta(days=1))
    async with session_scope() as session:
        total = (
            await session.execute(
                text("SELECT count(*) FROM metric_snapshots WHERE connection_id = :c"), {"c": conn}
            )
        ).scalar_one()
    assert total == count_after_backfill

    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    await run_worker()
    rows = await stored(conn)
    assert_equal_to_truth(state, rows, today, today)
    # one access token per hour of simulated time: the first, and one more after the clock jumped 3 days
    stats = httpx.get(f"{url}/_sim/stats").json()
    assert stats["token_mints"] == 2 and stats["auth_failures"] == 1 and stats["api_calls"] > 20


async def test_revoked_refresh_token_needs_reconnect_after_one_try(
    google_sim: Any, connection: Any, run_worker: Any, redis_client: Any
) -> None:
    _, url, _ = google_sim
    ws, conn = connection
    httpx.post(f"{url}/_sim/revoke", json={"refresh_token": DEFAULT_REFRESH_TOKEN})
    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    await run_worker()
    row = await status(conn)
    assert row.sync_status == "reconnect_required" and row.total_syncs_attempted == 1
    assert "reconnect" in row.last_sync_error.lower() and DEFAULT_REFRESH_TOKEN not in row.last_sync_error


async def test_faults_end_as_design_says(
    google_sim: Any, connection: Any, run_worker: Any, redis_client: Any
) -> None:
    _, url, _ = google_sim
    ws, conn = connection
    # 5xx twice: retried with backoff, then complete
    httpx.post(
        f"{url}/_sim/faults",
        json={"kind": "server_error", "count": 2, "status": 503, "code": "TRANSIENT_ERROR"},
    )
    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    await run_worker()
    row = await status(conn)
    assert row.sync_status == "idle" and row.total_syncs_attempted >= 2

    # a short quota (retryDelay 1 s): deferred and then completed
    httpx.post(f"{url}/_sim/faults", json={"kind": "throttle", "count": 1, "retry_after_s": 1})
    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    await run_worker()
    row = await status(conn)
    assert row.sync_status == "idle" and row.rate_limited_until is None

    # daily quota: the connection is rate limited until the quota resets, with no retry burned
    httpx.post(f"{url}/_sim/faults", json={"kind": "throttle", "scope": "developer", "count": 50})
    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    await run_worker()
    row = await status(conn)
    assert row.sync_status == "rate_limited" and row.last_error_kind == "rate_limited"
    assert row.rate_limited_until > datetime.now(UTC) + timedelta(minutes=15)
    queued = await redis_client.zcard(os.environ["METRICX_QUEUE_NAME"])
    assert queued == 0  # a daily quota is not re-queued for minutes later: the scheduler resumes it


async def test_realtime_through_a_real_worker_process(
    google_sim: Any, connection: Any, worker_process: Any, redis_client: Any
) -> None:
    state, _, env = google_sim
    ws, conn = connection
    worker_process(**env)
    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    deadline = time.monotonic() + 60
    while (row := await status(conn)).total_syncs_succeeded < 1:
        assert time.monotonic() < deadline, row.last_sync_error
        await asyncio.sleep(0.2)
    today = local_today(TZ, state.now())
    assert_equal_to_truth(state, await stored(conn), today, today)


async def test_account_total_from_the_api_includes_performance_max_to_the_cent(
    google_sim: Any, connection: Any, run_worker: Any, redis_client: Any
) -> None:
    """Performance Max spends at campaign level only: the API's default (primary) level is the total."""
    create_app = create_api

    state, _, _ = google_sim
    ws, conn = connection
    account = state.accounts[CHILD_NY_ID]
    assert any(c.channel == "PERFORMANCE_MAX" for c in account.entities("campaign"))
    await enqueue_sync_job(str(conn), str(ws), backfill=True, redis=redis_client)
    await run_worker()
    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)  # today's realtime slot
    await run_worker()
    today = local_today(TZ, state.now())
    start = today - timedelta(days=29)
    # The account's truth per date: every campaign (PMax included) at campaign level.
    truth_by_day: dict[date, Decimal] = {}
    for (_, day), n in truth(account, "campaign", start, today, state.now()).items():
        truth_by_day[day] = truth_by_day.get(day, Decimal(0)) + Decimal(n.cost_micros).scaleb(-6)
    ad_by_day: dict[date, Decimal] = {}
    for (_, day), n in truth(account, "ad", start, today, state.now()).items():
        ad_by_day[day] = ad_by_day.get(day, Decimal(0)) + Decimal(n.cost_micros).scaleb(-6)

    app = create_app()
    operator = {"Authorization": "Bearer test-operator-key"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api:
        key = await api.post(f"/v1/workspaces/{ws}/api-keys", json={"name": "t"}, headers=operator)
        headers = {"Authorization": f"Bearer {key.json()['key']}"}
        url = f"/v1/workspaces/{ws}/connections/{conn}/metrics"
        params = {"start": start.isoformat(), "end": today.isoformat(), "limit": 100}
        default = (await api.get(url, params=params, headers=headers)).json()
        ads = (await api.get(url, params=params | {"level": "ad"}, headers=headers)).json()
    await app.state.resources.aclose()
    assert default["level"] == "campaign"  # the primary level: the one that covers all spend
    got = {date.fromisoformat(r["metrics_date"]): Decimal(str(r["spend"])) for r in default["items"]}
    assert set(got) == set(truth_by_day)
    for day, spend in truth_by_day.items():
        assert got[day].quantize(Decimal("0.01")) == spend.quantize(Decimal("0.01")), day
    # Ad rows are labelled as the ad level and fall short of the account total: they never claim it.
    assert ads["level"] == "ad"
    ad_got = {date.fromisoformat(r["metrics_date"]): Decimal(str(r["spend"])) for r in ads["items"]}
    assert ad_got == {d: s for d, s in ad_by_day.items()}
    assert all(ad_got[d] <= truth_by_day[d] for d in ad_got)
    assert sum(ad_got.values()) < sum(truth_by_day.values())


async def test_a_paced_realtime_tick_makes_no_call_and_says_why(
    google_sim: Any, run_worker: Any, redis_client: Any
) -> None:
    """With the developer token's budget nearly spent, the next realtime tick is skipped by the engine
    (core's PacesRealtime): no API call, the connection stays idle and shows the reason."""
    _, url, env = google_sim
    token = f"dev-paced-{uuid.uuid4().hex[:8]}"
    with plugin_environment(
        {**env, "METRICX_GOOGLE_DEVELOPER_TOKEN": token, "METRICX_GOOGLE_DAILY_OPERATIONS": "8"}
    ):
        async with session_scope() as session:
            ws = await create_workspace(session, "google-paced")
            conn = await create_connection(
                session,
                ws.id,
                "google",
                CHILD_NY_ID,
                Credentials(refresh_token=DEFAULT_REFRESH_TOKEN),
                config={"login_customer_id": MANAGER_ID},
            )
        await enqueue_sync_job(str(conn.id), str(ws.id), redis=redis_client)
        await run_worker()
        first = await status(conn.id)
        assert first.sync_status == "idle" and first.last_error_kind is None, first.last_sync_error
        calls = httpx.get(f"{url}/_sim/stats").json()["api_calls"]
        await enqueue_sync_job(str(conn.id), str(ws.id), slot="next", redis=redis_client)
        await run_worker()
        second = await status(conn.id)
        # The budget itself, in the API (and `metricx status`, which prints the same quota lines).
        app = create_api()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api:
            listed = await api.get("/v1/providers", headers={"Authorization": "Bearer test-operator-key"})
        await app.state.resources.aclose()
        quota = next(p for p in listed.json() if p["name"] == "google")["quotas"][0]
        assert (quota["name"], quota["limit"], quota["used"], quota["access_level"]) == (
            "daily operations",
            8,
            6,
            "explorer",
        )
        assert token not in listed.text and quota["note"].startswith("developer token used 6/8")
    assert httpx.get(f"{url}/_sim/stats").json()["api_calls"] == calls
    assert second.sync_status == "idle" and second.last_error_kind == "paced"
    assert second.last_sync_error.startswith("developer token used 6/8 Google Ads operations today")
    assert second.total_syncs_succeeded == 1 and second.last_sync_completed_at == first.last_sync_completed_at
    async with session_scope() as session:
        runs = (
            await session.execute(
                text("SELECT status, error_kind FROM sync_runs WHERE connection_id = :c ORDER BY started_at"),
                {"c": conn.id},
            )
        ).all()
    assert [(r.status, r.error_kind) for r in runs] == [("complete", None), ("deferred", "paced")]
