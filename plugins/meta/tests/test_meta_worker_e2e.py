"""Meta through the real engine and worker: PostgreSQL, Redis, and the simulator over real HTTP."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from metricx_meta.simulator import DEFAULT_TOKEN, SimState, create_app, seed_account, truth
from sqlalchemy import text

from core import Credentials
from core.testing.harness import (
    create_api,
    create_connection,
    create_workspace,
    enqueue_sync_job,
    local_today,
    session_scope,
    slot_start,
)
from core.testing.http import serve_app
from core.testing.plugin import forget_rate_limits, plugin_environment

LEVELS = ("campaign", "adset", "ad")


def ahead_or_behind_timezone(now: datetime) -> str:
    """A timezone whose calendar day is not UTC's right now (UTC+14 late in the UTC day, else UTC-11)."""
    return "Pacific/Kiritimati" if now.hour >= 10 else "Pacific/Pago_Pago"


def accounts(today: date) -> list[Any]:
    other_tz = ahead_or_behind_timezone(datetime.now(UTC))
    return [
        seed_account("2001", campaigns=2, adsets_per_campaign=2, ads_per_adset=4, seed=7, today=today),
        seed_account(
            "2002",
            campaigns=2,
            adsets_per_campaign=2,
            ads_per_adset=3,
            timezone=other_tz,
            currency="NZD",
            seed=8,
            today=today,
        ),
        seed_account("2003", campaigns=2, adsets_per_campaign=2, ads_per_adset=3, seed=9, today=today),
    ]


@pytest.fixture
def meta_sim(metricx_env: Any) -> Iterator[tuple[SimState, str, dict[str, str]]]:
    state = SimState(accounts, now=datetime.now(UTC))  # frozen: "today" and its totals hold still
    with serve_app(create_app(state)) as url:
        env = {
            "METRICX_META_BASE_URL": url,
            "METRICX_META_ASYNC_POLL_INTERVAL_S": "0.1",
            "METRICX_META_MAX_RETRIES": "0",  # let the engine's retries (not the client's) handle 5xx
            "METRICX_META_THROTTLE_DEFAULT_RETRY_S": "1",
        }
        with plugin_environment(env, redis_url=metricx_env.redis_url):
            yield state, url, env


async def connect(account: str, token: str = DEFAULT_TOKEN) -> tuple[uuid.UUID, uuid.UUID]:
    async with session_scope() as session:
        ws = await create_workspace(session, f"meta-e2e-{account}")
        conn = await create_connection(
            session, ws.id, "meta", f"act_{account}", Credentials(access_token=token)
        )
    return ws.id, conn.id


async def rows(sql: str, **params: Any) -> list[Any]:
    async with session_scope() as session:
        return list((await session.execute(text(sql), params)).all())


async def stored(connection_id: uuid.UUID) -> dict[tuple[str, str, date], Any]:
    latest = await rows(
        "SELECT DISTINCT ON (s.entity_id, s.metrics_date) e.level, e.external_id, s.metrics_date, s.spend, "
        "s.impressions, s.clicks, s.conversions, s.revenue, s.captured_at FROM metric_snapshots s "
        "JOIN entities e ON e.id = s.entity_id WHERE s.connection_id = :c "
        "ORDER BY s.entity_id, s.metrics_date, s.captured_at DESC",
        c=connection_id,
    )
    return {(r.level, r.external_id, r.metrics_date): r for r in latest}


def assert_equal_to_truth(
    state: SimState, account: str, got: dict[Any, Any], since: date, until: date
) -> None:
    for level in LEVELS:
        expected = {
            (t["entity_id"], date.fromisoformat(t["date"])): SimpleNamespace(**t)
            for t in truth(state, account, level, since, until)
        }
        mine = {(ext, day): r for (lv, ext, day), r in got.items() if lv == level and since <= day <= until}
        assert set(mine) == set(expected), level
        for key, t in expected.items():
            r = mine[key]
            assert (r.impressions, r.clicks) == (t.impressions, t.clicks), key
            assert r.spend == Decimal(t.spend) and r.revenue == Decimal(t.revenue), key
            assert r.conversions == t.conversions, key
        assert sum(r.spend for r in mine.values()) == sum(Decimal(t.spend) for t in expected.values())


async def connection(connection_id: uuid.UUID) -> Any:
    [row] = await rows("SELECT * FROM connections WHERE id = :c", c=connection_id)
    return row


async def test_backfill_attribution_realtime_and_pauses(
    meta_sim: Any, run_worker: Any, redis_client: Any
) -> None:
    state, url, _ = meta_sim
    ws, conn = await connect("2001")
    today = local_today("America/Los_Angeles", state.now())

    await enqueue_sync_job(str(conn), str(ws), backfill=True, redis=redis_client)
    await run_worker()
    row = await connection(conn)
    assert row.sync_status == "idle", row.last_sync_error
    assert (row.timezone, row.currency) == ("America/Los_Angeles", "USD")
    got = await stored(conn)
    assert {day for (_, _, day) in got} <= {today - timedelta(days=d) for d in range(1, 91)}
    assert_equal_to_truth(state, "2001", got, today - timedelta(days=90), today - timedelta(days=1))
    total = len(got)

    # Meta revises recent conversions; the attribution re-sync brings the newer values, adding no rows
    httpx.post(f"{url}/_sim/clock", json={"advance_s": 3 * 86400}).raise_for_status()
    before = {k: r.conversions for k, r in got.items() if k[2] >= today - timedelta(days=7)}
    await enqueue_sync_job(str(conn), str(ws), force_refresh=True, redis=redis_client)
    await run_worker()
    got = await stored(conn)
    assert_equal_to_truth(state, "2001", got, today - timedelta(days=7), today - timedelta(days=1))
    assert sum(got[k].conversions for k in before) > sum(before.values())
    [count] = await rows("SELECT count(*) AS n FROM metric_snapshots WHERE connection_id = :c", c=conn)
    assert count.n == total

    # an ad paused at Meta reads PAUSED after the next sync; realtime writes today's current slot
    ad = next(
        r
        for r in await rows(
            "SELECT external_id FROM entities WHERE connection_id = :c AND level = 'ad' "
            "AND status = 'ACTIVE' ORDER BY external_id",
            c=conn,
        )
    )
    httpx.post(f"{url}/_sim/entities/{ad.external_id}/status", json={"status": "PAUSED"}).raise_for_status()
    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    await run_worker()
    [paused] = await rows(
        "SELECT status FROM entities WHERE connection_id = :c AND external_id = :e", c=conn, e=ad.external_id
    )
    assert paused.status == "PAUSED"
    today_rows = [r for (_, _, day), r in (await stored(conn)).items() if day == today]
    assert today_rows and {r.captured_at for r in today_rows} == {slot_start(datetime.now(UTC))}
    assert_equal_to_truth(state, "2001", await stored(conn), today, today)


async def test_realtime_uses_the_accounts_today_not_utcs(
    meta_sim: Any, run_worker: Any, redis_client: Any
) -> None:
    state, _, _ = meta_sim
    tz = ahead_or_behind_timezone(datetime.now(UTC))
    local = datetime.now(UTC).astimezone(ZoneInfo(tz)).date()
    assert local != datetime.now(UTC).date()
    ws, conn = await connect("2002")
    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    await run_worker()
    row = await connection(conn)
    assert row.sync_status == "idle" and row.timezone == tz, row.last_sync_error
    assert truth(state, "2002", "ad", local, local)  # the account delivers today
    days = {day for (_, _, day) in await stored(conn)}
    assert max(days) == local  # realtime wrote the account's today (and closed its yesterday)
    assert_equal_to_truth(state, "2002", await stored(conn), local, local)


async def test_faults_through_the_worker(meta_sim: Any, run_worker: Any, redis_client: Any) -> None:
    _, url, _ = meta_sim
    ws, conn = await connect("2003")

    # throttled (code 17): deferred with rate_limited_until, then the re-queued sync completes
    httpx.post(
        f"{url}/_sim/faults",
        json={"kind": "throttle", "code": 17, "count": 1, "regain_minutes": 0, "account": "2003"},
    ).raise_for_status()
    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    await run_worker(max_burst_jobs=1)
    row = await connection(conn)
    assert row.sync_status == "rate_limited" and row.rate_limited_until is not None
    # Meta's usage headers keep the account blocked for a while; let that while pass
    forget_rate_limits(os.environ["REDIS_URL"])
    await run_worker()
    row = await connection(conn)
    assert row.sync_status == "idle" and row.total_syncs_succeeded == 1

    # 5xx twice: two retries with backoff, then complete
    httpx.post(
        f"{url}/_sim/faults", json={"kind": "server_error", "status": 503, "count": 2, "account": "2003"}
    ).raise_for_status()
    job = await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    await run_worker()
    tries = await rows(
        "SELECT try_number, status FROM sync_runs WHERE job_id = :j ORDER BY try_number", j=job["job_id"]
    )
    assert [t.status for t in tries] == ["retrying", "retrying", "complete"]

    # a malformed row: a clear error naming the field, and nothing of that batch written
    before = await stored(conn)
    httpx.post(f"{url}/_sim/clock", json={"advance_s": 2 * 86400}).raise_for_status()
    httpx.post(
        f"{url}/_sim/faults",
        json={"kind": "malformed", "field": "impressions", "value": "n/a", "account": "2003"},
    ).raise_for_status()
    await enqueue_sync_job(str(conn), str(ws), force_refresh=True, redis=redis_client)
    await run_worker()
    row = await connection(conn)
    assert row.sync_status == "error" and row.last_error_kind == "payload"
    assert "impressions" in row.last_sync_error
    after = await stored(conn)
    assert {k: r.conversions for k, r in after.items()} == {k: r.conversions for k, r in before.items()}
    httpx.delete(f"{url}/_sim/faults").raise_for_status()


async def test_expired_token_needs_reconnect_after_one_try(
    meta_sim: Any, run_worker: Any, redis_client: Any
) -> None:
    _, url, _ = meta_sim
    httpx.post(f"{url}/_sim/tokens", json={"token": "EAAB-expired", "state": "expired"}).raise_for_status()
    ws, conn = await connect("2003", token="EAAB-expired")
    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    await run_worker()
    row = await connection(conn)
    assert row.sync_status == "reconnect_required" and row.total_syncs_attempted == 1
    assert "reconnect" in row.last_sync_error.lower() and "EAAB-expired" not in row.last_sync_error


async def test_backfill_through_a_real_worker_process(
    meta_sim: Any, worker_process: Any, redis_client: Any
) -> None:
    state, _, env = meta_sim
    worker_process(**env)
    ws, conn = await connect("2003")
    await enqueue_sync_job(str(conn), str(ws), backfill=True, redis=redis_client)
    deadline = time.monotonic() + 90
    while (row := await connection(conn)).total_syncs_succeeded < 1:
        assert time.monotonic() < deadline and row.sync_status != "error", row.last_sync_error
        await asyncio.sleep(0.3)
    today = local_today("America/Los_Angeles", state.now())
    assert_equal_to_truth(
        state, "2003", await stored(conn), today - timedelta(days=90), today - timedelta(days=1)
    )


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ({"code": 200, "message": "(#200) Requires ads_read permission to manage the object"}, "ads_read"),
        ({"code": 415, "message": "Two factor authentication required."}, "two-factor"),
        ({"code": 190, "subcode": 459, "message": "Error validating access token"}, "checkpointed"),
    ],
)
async def test_permission_2fa_and_token_codes_need_reconnect_naming_why(
    meta_sim: Any, run_worker: Any, redis_client: Any, fault: dict[str, Any], says: str
) -> None:
    _, url, _ = meta_sim
    httpx.post(
        f"{url}/_sim/faults", json={"kind": "graph_error", **fault, "account": "2003"}
    ).raise_for_status()
    ws, conn = await connect("2003")
    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    await run_worker()
    row = await connection(conn)
    assert row.sync_status == "reconnect_required" and row.total_syncs_attempted == 1
    assert says in row.last_sync_error and "reconnect" in row.last_sync_error


async def test_is_transient_error_is_retried_then_completes(
    meta_sim: Any, run_worker: Any, redis_client: Any
) -> None:
    _, url, _ = meta_sim
    fault = {"kind": "graph_error", "code": 1, "subcode": 99, "is_transient": True, "account": "2003"}
    httpx.post(f"{url}/_sim/faults", json=fault).raise_for_status()
    ws, conn = await connect("2003")
    job = await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    await run_worker()
    tries = await rows("SELECT status FROM sync_runs WHERE job_id = :j ORDER BY try_number", j=job["job_id"])
    assert [t.status for t in tries] == ["retrying", "complete"]


async def test_the_api_reports_link_clicks_as_clicks_and_clicks_all_beside_them(
    meta_sim: Any, run_worker: Any, redis_client: Any
) -> None:
    """`clicks` is Ads Manager's link clicks; Meta's "Clicks (all)" stays available as extra.clicks_all,
    per ad and summed per day, each equal to what the simulator reports."""
    state, _, _ = meta_sim
    ws, conn = await connect("2001")
    await enqueue_sync_job(str(conn), str(ws), backfill=True, redis=redis_client)
    await run_worker()
    today = local_today("America/Los_Angeles", state.now())
    start, end = today - timedelta(days=10), today - timedelta(days=1)
    ads = {(t["entity_id"], t["date"]): t for t in truth(state, "2001", "ad", start, end)}
    assert any(t["clicks_all"] > t["clicks"] for t in ads.values())  # the two differ

    app = create_api()
    operator = {"Authorization": "Bearer test-operator-key"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api:
        key = await api.post(f"/v1/workspaces/{ws}/api-keys", json={"name": "t"}, headers=operator)
        headers = {"Authorization": f"Bearer {key.json()['key']}"}
        url = f"/v1/workspaces/{ws}/connections/{conn}/metrics"
        params = {"start": start.isoformat(), "end": end.isoformat(), "level": "ad", "limit": 200}
        per_ad = (await api.get(url, params=params | {"group_by": "entity"}, headers=headers)).json()
        per_day = (await api.get(url, params=params, headers=headers)).json()
    await app.state.resources.aclose()
    got = {(r["external_id"], r["metrics_date"]): r for r in per_ad["items"]}
    assert set(got) == set(ads)
    for key, t in ads.items():
        assert got[key]["clicks"] == t["clicks"], key
        assert Decimal(str(got[key]["extra"]["clicks_all"])) == t["clicks_all"], key
    for row in per_day["items"]:
        day = [t for (_, d), t in ads.items() if d == row["metrics_date"]]
        assert row["clicks"] == sum(t["clicks"] for t in day)
        assert Decimal(str(row["extra"]["clicks_all"])) == sum(t["clicks_all"] for t in day)
