"""The REST API against real PostgreSQL, Redis, the test provider's HTTP simulator and real arq workers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import APIRouter

from tests.conftest import fetch_all, fetch_one
from tests.integration.test_api_support import (
    ADS,
    OPERATOR,
    api,
    as_numbers,
    connect,
    new_tenant,
    tenant,
    truth,
    wait_for_job,
)

__all__ = ["api", "tenant"]  # fixtures


async def test_health_and_readiness(api: httpx.AsyncClient) -> None:
    assert (await api.get("/v1/health")).json() == {"status": "ok", "checks": {}}
    ready = await api.get("/v1/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}


async def test_queue_depth_counts_due_and_deferred_jobs(api: httpx.AsyncClient, redis_client: Any) -> None:
    from core.enqueue import JobRequest, enqueue_many

    before = (await api.get("/v1/health/queue")).json()
    await enqueue_many(
        redis_client,
        [JobRequest("scheduled_compaction", f"depth-now-{i}") for i in range(3)]
        + [JobRequest("scheduled_compaction", "depth-later", defer_s=3600)],
    )
    after = (await api.get("/v1/health/queue")).json()
    assert after["queued"] - before["queued"] == 3 and after["deferred"] - before["deferred"] == 1
    await redis_client.zrem(after["queue"], "depth-now-0", "depth-now-1", "depth-now-2", "depth-later")


async def test_keys_are_shown_once_hashed_and_revocable(api: httpx.AsyncClient, tenant: Any) -> None:
    me = await api.get(tenant.url(), headers=tenant.headers)
    assert me.status_code == 200 and me.json()["name"] == tenant.name
    stored = await fetch_all(
        "SELECT key_hash, prefix FROM api_keys WHERE workspace_id = :w", w=tenant.workspace_id
    )
    assert stored and all(tenant.key not in (row.key_hash, row.prefix) for row in stored)
    listed = await api.get(tenant.url("/api-keys"), headers=tenant.headers)
    assert tenant.key not in listed.text and listed.json()["total"] == 1

    second = await api.post(tenant.url("/api-keys"), json={"name": "ci"}, headers=tenant.headers)
    assert second.status_code == 201
    revoke = await api.delete(tenant.url(f"/api-keys/{second.json()['id']}"), headers=tenant.headers)
    assert revoke.status_code == 200 and revoke.json()["revoked_at"]
    gone = await api.get(tenant.url(), headers={"Authorization": f"Bearer {second.json()['key']}"})
    assert gone.status_code == 401
    assert gone.json()["error"]["code"] == "unauthorized"


async def test_auth_errors_are_json_with_stable_codes(api: httpx.AsyncClient, tenant: Any) -> None:
    missing = await api.get(tenant.url("/connections"))
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
    assert missing.json()["error"]["request_id"] == missing.headers["x-request-id"]
    not_operator = await api.post("/v1/workspaces", json={"name": "x"}, headers=tenant.headers)
    assert not_operator.status_code == 403
    assert not_operator.json()["error"]["code"] == "operator_required"
    listed = await api.get("/v1/workspaces", params={"limit": 1}, headers=OPERATOR)
    assert listed.status_code == 200 and listed.json()["limit"] == 1 and len(listed.json()["items"]) == 1
    bad = await api.get(tenant.url("/connections"), params={"limit": 0}, headers=tenant.headers)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error"
    assert "limit" in bad.json()["error"]["message"]
    traced = await api.get("/v1/health", headers={"X-Request-ID": "trace-123"})
    assert traced.headers["x-request-id"] == "trace-123"


async def test_connection_is_validated_by_its_provider_and_never_echoes_tokens(
    api: httpx.AsyncClient, tenant: Any, sim: Any
) -> None:
    sim.control(timezone="America/New_York", currency="EUR")
    body = {
        "provider": "testprovider",
        "external_account_id": "acct-validate",
        "credentials": {"access_token": "tp-valid-token", "refresh_token": "tp-refresh-secret"},
        "config": {"base_url": sim.url},
    }
    # A secret in config would be stored as is: refused, naming the key, without echoing the value.
    in_config = {**body, "config": {"base_url": sim.url, "client_secret": "do-not-echo"}}
    refused = await api.post(tenant.url("/connections"), json=in_config, headers=tenant.headers)
    assert refused.status_code == 422 and "config.client_secret" in refused.json()["error"]["message"]
    assert "do-not-echo" not in refused.text
    created = await api.post(tenant.url("/connections"), json=body, headers=tenant.headers)
    assert created.status_code == 201, created.text
    conn = created.json()
    assert (conn["timezone"], conn["currency"]) == ("America/New_York", "EUR")
    assert conn["backfill"]["status"] == "enqueued" and conn["backfill"]["mode"] == "backfill"
    assert conn["sync_status"] == "queued"
    for response in (
        created,
        await api.get(tenant.url(f"/connections/{conn['id']}"), headers=tenant.headers),
        await api.get(tenant.url("/connections"), headers=tenant.headers),
    ):
        for secret in ("tp-valid-token", "tp-refresh-secret", "do-not-echo"):
            assert secret not in response.text

    duplicate = await api.post(tenant.url("/connections"), json=body, headers=tenant.headers)
    assert duplicate.status_code == 409 and duplicate.json()["error"]["code"] == "connection_exists"

    rejected = await api.post(
        tenant.url("/connections"),
        json={**body, "external_account_id": "acct-2", "credentials": {"access_token": "expired-token"}},
        headers=tenant.headers,
    )
    assert rejected.status_code == 422
    assert rejected.json()["error"]["code"] == "invalid_credentials"
    assert "reconnect" in rejected.json()["error"]["message"].lower()
    assert "expired-token" not in rejected.text

    empty = await api.post(
        tenant.url("/connections"),
        json={**body, "external_account_id": "acct-3", "credentials": {}},
        headers=tenant.headers,
    )
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "invalid_credentials"

    unknown = await api.post(
        tenant.url("/connections"), json={**body, "provider": "myspace"}, headers=tenant.headers
    )
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "provider_not_installed"
    assert "testprovider" in unknown.json()["error"]["message"]

    broken = await api.post(
        tenant.url("/connections"),
        json={**body, "external_account_id": "acct-4", "config": {}},
        headers=tenant.headers,
    )
    assert broken.status_code == 422 and "config" in broken.json()["error"]["message"]
    count = await fetch_one(
        "SELECT count(*) AS n FROM connections WHERE workspace_id = :w", w=tenant.workspace_id
    )
    assert count.n == 1


async def test_sync_runs_in_a_worker_and_metrics_match_the_platform(
    api: httpx.AsyncClient, tenant: Any, sim: Any, run_worker: Any
) -> None:
    conn = await connect(api, tenant, sim.url)
    sync = await api.post(
        tenant.url(f"/connections/{conn['id']}/sync"), json={"mode": "backfill"}, headers=tenant.headers
    )
    assert sync.status_code == 202 and sync.json()["status"] == "enqueued"
    job_id = sync.json()["job_id"]
    queued = await api.get(tenant.url(f"/jobs/{job_id}"), headers=tenant.headers)
    assert queued.json()["status"] == "queued"
    await run_worker()

    job = await api.get(tenant.url(f"/jobs/{job_id}"), headers=tenant.headers)
    assert job.status_code == 200
    body = job.json()
    assert body["status"] == "complete" and body["error"] is None
    assert body["result"]["rows"] == 90 * len(ADS)
    assert body["progress"]["slices_done"] == body["progress"]["slices_total"] == 3

    today = datetime.now(UTC).date()
    start, end = today - timedelta(days=90), today - timedelta(days=1)
    metrics = await api.get(
        tenant.url(f"/connections/{conn['id']}/metrics"),
        params={"start": start.isoformat(), "end": end.isoformat(), "limit": 200},
        headers=tenant.headers,
    )
    assert metrics.status_code == 200, metrics.text
    page = metrics.json()
    assert (page["currency"], page["timezone"], page["level"]) == ("USD", "UTC", "ad")
    assert page["total"] == 90 and len(page["items"]) == 90
    for row in page["items"]:
        day = datetime.fromisoformat(row["metrics_date"]).date()
        assert as_numbers(row) == truth(conn["external_account_id"], day), day

    per_entity = await api.get(
        tenant.url(f"/connections/{conn['id']}/metrics"),
        params={"start": end.isoformat(), "end": end.isoformat(), "group_by": "entity"},
        headers=tenant.headers,
    )
    assert sorted(r["external_id"] for r in per_entity.json()["items"]) == sorted(ADS)

    runs = await api.get(tenant.url(f"/connections/{conn['id']}/runs"), headers=tenant.headers)
    [run] = runs.json()["items"]
    assert (run["mode"], run["status"], run["try_number"], run["rows_written"]) == (
        "backfill",
        "complete",
        1,
        90 * len(ADS),
    )
    assert (run["window_start"], run["window_end"]) == (start.isoformat(), end.isoformat())
    entities = await api.get(
        tenant.url(f"/connections/{conn['id']}/entities"), params={"level": "ad"}, headers=tenant.headers
    )
    assert entities.json()["total"] == len(ADS)


async def test_intraday_series_and_latest_snapshot_wins(
    api: httpx.AsyncClient, tenant: Any, sim: Any, run_worker: Any
) -> None:
    conn = await connect(api, tenant, sim.url)
    url = tenant.url(f"/connections/{conn['id']}")
    await api.post(f"{url}/sync", json={"mode": "realtime"}, headers=tenant.headers)
    await run_worker()
    today = datetime.now(UTC).date()
    # A later snapshot of today with bigger numbers: the daily total must use it, not a sum.
    await fetch_all(
        "INSERT INTO metric_snapshots (workspace_id, connection_id, entity_id, metrics_date, captured_at, "
        "spend, impressions, clicks, conversions, revenue, currency) "
        "SELECT workspace_id, connection_id, entity_id, metrics_date, captured_at + interval '1 hour', "
        "spend + 1, impressions + 10, clicks, conversions, revenue, currency FROM metric_snapshots "
        "WHERE connection_id = :c AND metrics_date = :d RETURNING 1",
        c=conn["id"],
        d=today,
    )
    daily = await api.get(
        f"{url}/metrics",
        params={"start": today.isoformat(), "end": today.isoformat()},
        headers=tenant.headers,
    )
    [row] = daily.json()["items"]
    expected = truth(conn["external_account_id"], today)
    assert row["impressions"] == expected["impressions"] + 10 * len(ADS)

    intraday = await api.get(f"{url}/metrics/intraday", headers=tenant.headers)
    points = intraday.json()["points"]
    assert len(points) == 2
    assert points[0]["impressions"] == expected["impressions"]
    assert points[1]["impressions"] == expected["impressions"] + 10 * len(ADS)


async def test_repeated_sync_requests_yield_one_job(
    api: httpx.AsyncClient, tenant: Any, sim: Any, run_worker: Any
) -> None:
    conn = await connect(api, tenant, sim.url)
    url = tenant.url(f"/connections/{conn['id']}/sync")
    answers = [
        (await api.post(url, json={"mode": "attribution"}, headers=tenant.headers)).json() for _ in range(5)
    ]
    assert answers[0]["status"] == "enqueued"
    assert [a["status"] for a in answers[1:]] == ["already_queued"] * 4
    assert {a["job_id"] for a in answers} == {answers[0]["job_id"]}
    status = await api.get(tenant.url(f"/connections/{conn['id']}"), headers=tenant.headers)
    assert status.json()["sync_status"] == "queued"
    await run_worker()
    runs = await fetch_all("SELECT job_id FROM sync_runs WHERE connection_id = :c", c=conn["id"])
    assert [r.job_id for r in runs] == [answers[0]["job_id"]]
    after = await api.get(tenant.url(f"/connections/{conn['id']}"), headers=tenant.headers)
    assert after.json()["sync_status"] == "idle" and after.json()["total_syncs_succeeded"] == 1


async def test_workspace_sync_covers_every_active_connection(
    api: httpx.AsyncClient, tenant: Any, sim: Any, run_worker: Any
) -> None:
    first, second, paused = [await connect(api, tenant, sim.url) for _ in range(3)]
    pause = await api.post(tenant.url(f"/connections/{paused['id']}/pause"), headers=tenant.headers)
    assert pause.json()["status"] == "paused"
    refused = await api.post(tenant.url(f"/connections/{paused['id']}/sync"), headers=tenant.headers)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "connection_paused"

    result = await api.post(tenant.url("/sync"), json={"mode": "realtime"}, headers=tenant.headers)
    assert result.status_code == 202
    by_conn = {r["connection_id"]: r for r in result.json()["results"]}
    assert set(by_conn) == {first["id"], second["id"]}
    assert {r["status"] for r in by_conn.values()} == {"enqueued"}
    again = await api.post(tenant.url("/sync"), json={"mode": "realtime"}, headers=tenant.headers)
    assert {r["status"] for r in again.json()["results"]} == {"already_queued"}
    await run_worker()
    for r in by_conn.values():
        assert (await wait_for_job(api, tenant, r["job_id"]))["status"] == "complete"

    resumed = await api.post(tenant.url(f"/connections/{paused['id']}/resume"), headers=tenant.headers)
    assert resumed.json()["status"] == "active"


async def test_failed_job_reports_its_error(
    api: httpx.AsyncClient, tenant: Any, sim: Any, run_worker: Any
) -> None:
    conn = await connect(api, tenant, sim.url)
    sim.control(malformed=True)
    sync = await api.post(tenant.url(f"/connections/{conn['id']}/sync"), headers=tenant.headers)
    await run_worker()
    job = (await api.get(tenant.url(f"/jobs/{sync.json()['job_id']}"), headers=tenant.headers)).json()
    assert job["status"] == "failed" and "impressions" in job["error"]
    status = (await api.get(tenant.url(f"/connections/{conn['id']}"), headers=tenant.headers)).json()
    assert status["sync_status"] == "error" and "impressions" in status["last_sync_error"]


async def test_unknown_jobs_are_not_found(api: httpx.AsyncClient, tenant: Any) -> None:
    for job_id in ("cron:scheduled_compaction:1", "sync:not-a-uuid:realtime:1", "sync"):
        response = await api.get(tenant.url(f"/jobs/{job_id}"), headers=tenant.headers)
        assert response.status_code == 404 and response.json()["error"]["code"] == "job_not_found"


async def test_delete_keeps_or_removes_data_as_asked(
    api: httpx.AsyncClient, tenant: Any, sim: Any, run_worker: Any
) -> None:
    kept, removed = await connect(api, tenant, sim.url), await connect(api, tenant, sim.url)
    await api.post(tenant.url("/sync"), headers=tenant.headers)
    await run_worker()

    assert (
        await api.delete(tenant.url(f"/connections/{kept['id']}"), headers=tenant.headers)
    ).status_code == 204
    after = (await api.get(tenant.url(f"/connections/{kept['id']}"), headers=tenant.headers)).json()
    assert after["status"] == "disconnected"
    creds = await fetch_one("SELECT count(*) AS n FROM credentials WHERE connection_id = :c", c=kept["id"])
    assert creds.n == 0
    data = await api.get(tenant.url(f"/connections/{kept['id']}/metrics"), headers=tenant.headers)
    assert data.json()["total"] >= 1
    refused = await api.post(tenant.url(f"/connections/{kept['id']}/sync"), headers=tenant.headers)
    assert refused.status_code == 409
    workspace_sync = await api.post(tenant.url("/sync"), headers=tenant.headers)
    assert kept["id"] not in workspace_sync.text

    gone = await api.delete(
        tenant.url(f"/connections/{removed['id']}"), params={"data": "delete"}, headers=tenant.headers
    )
    assert gone.status_code == 204
    assert (
        await api.get(tenant.url(f"/connections/{removed['id']}"), headers=tenant.headers)
    ).status_code == 404
    rows = await fetch_one(
        "SELECT count(*) AS n FROM metric_snapshots WHERE connection_id = :c", c=removed["id"]
    )
    assert rows.n == 0


async def test_providers_list_capabilities(api: httpx.AsyncClient, tenant: Any) -> None:
    response = await api.get("/v1/providers", headers=tenant.headers)
    by_name = {p["name"]: p for p in response.json()}
    assert by_name["testprovider"]["levels"] == ["campaign", "ad"]
    assert by_name["testprovider"]["plugin"] == "testprovider"
    assert (await api.get("/v1/providers")).status_code == 401


async def test_providers_and_readiness_show_api_versions_and_sunsets(
    api: httpx.AsyncClient, tenant: Any
) -> None:
    from core.lifecycle import api_version_of
    from core.plugins import get_registry

    response = await api.get("/v1/providers", headers=tenant.headers)
    by_name = {p["name"]: p for p in response.json()}
    assert by_name["testprovider"]["api_version"] == {
        "version": "v1",
        "sunset": None,
        "days_left": None,
        "status": "supported",
    }
    ready = (await api.get("/v1/ready")).json()
    assert ready["api_versions"]["testprovider"] == by_name["testprovider"]["api_version"]
    for name, provider in get_registry().providers.items():  # built-in plugins, when installed
        declared = api_version_of(provider)
        shown = ready["api_versions"][name]
        assert shown["version"] == declared.version == by_name[name]["api_version"]["version"]
        assert shown["sunset"] == (declared.sunset.isoformat() if declared.sunset else None)


async def test_plugin_routers_are_mounted_under_their_plugin(metricx_env: Any) -> None:
    from core.api import create_app
    from core.plugins import get_registry

    router = APIRouter()

    @router.post("/webhook")
    async def webhook() -> dict[str, str]:
        return {"received": "yes"}

    registry = get_registry()
    registry.routers.append(("demo", router))
    try:
        app = create_app()
    finally:
        registry.routers.remove(("demo", router))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.post("/v1/plugins/demo/webhook")
    assert response.json() == {"received": "yes"}
    assert "/v1/plugins/demo/webhook" in json.dumps(app.openapi()["paths"])


async def test_real_worker_process_completes_an_api_sync(
    api: httpx.AsyncClient, sim: Any, worker_process: Any
) -> None:
    tenant = await new_tenant(api)
    conn = await connect(api, tenant, sim.url, backfill=True)
    worker_process()
    job = await wait_for_job(api, tenant, conn["backfill"]["job_id"], timeout_s=90)
    assert job["status"] == "complete" and job["progress"]["slices_done"] == 3
    day = datetime.now(UTC).date() - timedelta(days=5)
    metrics = await api.get(
        tenant.url(f"/connections/{conn['id']}/metrics"),
        params={"start": day.isoformat(), "end": day.isoformat()},
        headers=tenant.headers,
    )
    [row] = metrics.json()["items"]
    assert as_numbers(row) == truth(conn["external_account_id"], day)


async def test_asking_for_another_mode_while_a_sync_is_queued_returns_that_sync(
    api: httpx.AsyncClient, sim: Any, run_worker: Any
) -> None:
    tenant = await new_tenant(api)
    conn = await connect(api, tenant, sim.url, backfill=True)
    again = await api.post(
        tenant.url(f"/connections/{conn['id']}/sync"), json={"mode": "realtime"}, headers=tenant.headers
    )
    assert again.json() == {
        "status": "already_queued",
        "job_id": conn["backfill"]["job_id"],
        "connection_id": conn["id"],
        "mode": "backfill",
    }
    await run_worker()


async def test_a_server_error_still_answers_with_the_request_id(metricx_env: Any) -> None:
    import structlog

    from core.api import create_app

    app = create_app()
    seen: dict[str, Any] = {}

    async def boom() -> None:
        seen.update(structlog.contextvars.get_contextvars())
        raise RuntimeError("boom")

    app.add_api_route("/boom", boom)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://metricx.test") as client:
        answer = await client.get("/boom", headers={"X-Request-ID": "req-500"})
    await app.state.resources.aclose()
    # The 500 handler runs outside the routes: its answer (and its log line) keep the id.
    assert answer.status_code == 500
    assert answer.headers["x-request-id"] == "req-500" == answer.json()["error"]["request_id"]
    assert seen["request_id"] == "req-500"
