"""Reconnect: new credentials for a connection keep its id, data and sync runs, and catch up what it
missed. Real API over ASGI, PostgreSQL, Redis, an in-process arq worker and the test provider's simulator."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from tests.conftest import fetch_all, fetch_one
from tests.integration.test_api_support import Tenant, api, connect, tenant

__all__ = ["api", "tenant"]  # fixtures

ADS = 6  # the simulator's accounts have 2 campaigns x 3 ads
ROWS_BEFORE = "SELECT count(*) AS n FROM metric_snapshots WHERE connection_id = :c AND metrics_date < :d"
DAYS = (
    "SELECT count(DISTINCT metrics_date) AS n FROM metric_snapshots "
    "WHERE connection_id = :c AND metrics_date < :t"
)
RUNS = "SELECT id, mode, status, rows_written FROM sync_runs WHERE connection_id = :c ORDER BY started_at"


def today() -> date:
    return datetime.now(UTC).date()  # the simulator's accounts are in UTC


async def execute(sql: str, **params: Any) -> None:
    from sqlalchemy import text

    from core.db.engine import session_scope

    async with session_scope() as session:
        await session.execute(text(sql), params)


async def synced_connection(
    api: httpx.AsyncClient, tenant: Tenant, sim: Any, run_worker: Any
) -> dict[str, Any]:
    """A connection with its 90-day history stored."""
    body = await connect(api, tenant, sim.url, backfill=True)
    await run_worker()
    assert (await fetch_one(DAYS, c=body["id"], t=today())).n == 90
    return body


async def test_a_reconnect_required_connection_is_fixed_with_new_credentials_and_catches_up(
    api: httpx.AsyncClient, tenant: Tenant, sim: Any, run_worker: Any
) -> None:
    conn = await synced_connection(api, tenant, sim, run_worker)
    cid, account = conn["id"], conn["external_account_id"]
    # A five-day outage: the platform revoked the token, the days since were never fetched.
    outage = today() - timedelta(days=5)
    for table, column in (("metric_snapshots", "metrics_date"), ("coverage_days", "day")):
        await execute(f"DELETE FROM {table} WHERE connection_id = :c AND {column} >= :d", c=cid, d=outage)
    before = (await fetch_one(ROWS_BEFORE, c=cid, d=outage)).n
    assert before == 85 * ADS
    sim.control(revoked=True)
    sync = await api.post(tenant.url(f"/connections/{cid}/sync"), headers=tenant.headers)
    assert sync.status_code == 202, sync.text
    await run_worker()
    broken = (await api.get(tenant.url(f"/connections/{cid}"), headers=tenant.headers)).json()
    assert broken["sync_status"] == "reconnect_required"
    runs_before = await fetch_all(RUNS, c=cid)

    # A manual sync says what to do instead of queuing one that fails again.
    again = await api.post(tenant.url(f"/connections/{cid}/sync"), headers=tenant.headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "reconnect_required"
    assert f"/connections/{cid}/credentials" in again.json()["error"]["message"]

    # A login that reaches another account only: a clear 409, nothing changes.
    sim.control(grant={"token": "tp-login-other", "accounts": ["acct-someone-else"]})
    wrong = await api.put(
        tenant.url(f"/connections/{cid}/credentials"),
        json={"access_token": "tp-login-other"},
        headers=tenant.headers,
    )
    assert wrong.status_code == 409, wrong.text
    assert wrong.json()["error"]["code"] == "wrong_account" and account in wrong.json()["error"]["message"]
    assert "tp-login-other" not in wrong.text
    still = await fetch_one("SELECT sync_status FROM connections WHERE id = :c", c=cid)
    assert still.sync_status == "reconnect_required"

    # The user logs in again: a new token that reaches this account.
    sim.control(grant={"token": "tp-login-new", "accounts": [account]})
    fixed = await api.put(
        tenant.url(f"/connections/{cid}/credentials"),
        json={"access_token": "tp-login-new"},
        headers=tenant.headers,
    )
    assert fixed.status_code == 200, fixed.text
    body = fixed.json()
    assert body["id"] == cid and "tp-login-new" not in fixed.text
    assert body["last_sync_error"] is None and body["sync_status"] in {"idle", "queued"}
    assert body["days_missing"] == 5
    assert body["catch_up"]["mode"] == "backfill" and body["catch_up"]["status"] == "enqueued"
    await run_worker()

    after = (await api.get(tenant.url(f"/connections/{cid}"), headers=tenant.headers)).json()
    assert (after["id"], after["sync_status"], after["created_at"]) == (cid, "idle", conn["created_at"])
    assert after["coverage"]["days_covered"] == 90
    assert (await fetch_one(DAYS, c=cid, t=today())).n == 90  # the missed days are back
    assert (await fetch_one(ROWS_BEFORE, c=cid, d=outage)).n == before  # older days untouched
    runs = await fetch_all(RUNS, c=cid)
    assert [r.id for r in runs[: len(runs_before)]] == [r.id for r in runs_before]  # history kept
    catch_up = runs[-1]
    # Only the five missed days were fetched: a catch-up, not a new 90-day backfill.
    assert (catch_up.mode, catch_up.status, catch_up.rows_written) == ("backfill", "complete", 5 * ADS)


async def test_new_credentials_for_a_missing_or_foreign_connection_are_404(
    api: httpx.AsyncClient, tenant: Tenant, sim: Any
) -> None:
    from tests.integration.test_api_support import new_tenant

    other = await new_tenant(api)
    conn = await connect(api, other, sim.url)
    for cid in (conn["id"], str(uuid.uuid4())):
        response = await api.put(
            tenant.url(f"/connections/{cid}/credentials"),
            json={"access_token": "tp-valid-token"},
            headers=tenant.headers,
        )
        assert response.status_code == 404, response.text


async def test_a_deleted_connection_whose_data_was_kept_is_added_again_with_its_history(
    api: httpx.AsyncClient, tenant: Tenant, sim: Any, run_worker: Any
) -> None:
    conn = await synced_connection(api, tenant, sim, run_worker)
    cid, account = conn["id"], conn["external_account_id"]
    yesterday = today() - timedelta(days=1)
    rows = (await fetch_one(ROWS_BEFORE, c=cid, d=yesterday)).n
    runs = await fetch_all(RUNS, c=cid)
    gone = await api.delete(tenant.url(f"/connections/{cid}"), headers=tenant.headers)
    assert gone.status_code == 204

    again = await api.post(
        tenant.url("/connections"),
        json={
            "provider": "testprovider",
            "external_account_id": account,
            "credentials": {"access_token": "tp-valid-token"},
            "config": {"base_url": sim.url},
        },
        headers=tenant.headers,
    )
    assert again.status_code == 201, again.text
    body = again.json()
    assert (body["id"], body["status"]) == (cid, "active")
    await run_worker()
    assert (await fetch_one(ROWS_BEFORE, c=cid, d=yesterday)).n == rows
    after = await fetch_all(RUNS, c=cid)
    assert [r.id for r in after[: len(runs)]] == [r.id for r in runs]
    # The backfill it queued found its history there: it fetched no old day again.
    assert after[-1].status == "complete" and after[-1].rows_written <= 2 * ADS

    # An active connection of the same account is still refused, naming the way to reconnect it.
    dup = await connect_raw(api, tenant, sim.url, account)
    assert dup.status_code == 409 and "reconnect" in dup.json()["error"]["message"]


async def connect_raw(api: httpx.AsyncClient, tenant: Tenant, sim_url: str, account: str) -> httpx.Response:
    return await api.post(
        tenant.url("/connections"),
        json={
            "provider": "testprovider",
            "external_account_id": account,
            "credentials": {"access_token": "tp-valid-token"},
            "config": {"base_url": sim_url},
        },
        headers=tenant.headers,
    )
