"""Issue 19 item 7: zones validated at connect, compaction isolated per connection, paused and
reconnect_required connections, the operator key on tenant routes."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from core.db.engine import session_scope
from tests.integration.test_api_support import OPERATOR, Tenant, connect
from tests.integration.test_compaction import add_day, make_account


async def test_an_unknown_timezone_is_refused_at_connect(
    api: httpx.AsyncClient, tenant: Tenant, sim: Any
) -> None:
    for zone in ("Mars/Olympus", "../../etc/passwd", "Europe/Berlin "):
        sim.control(timezone=zone)
        response = await api.post(
            tenant.url("/connections"),
            json={
                "provider": "testprovider",
                "external_account_id": "acct-tz",
                "credentials": {"access_token": "tp-valid-token"},
                "config": {"base_url": sim.url},
            },
            headers=tenant.headers,
        )
        assert response.status_code == 422, response.text
        assert "not an IANA zone" in response.json()["error"]["message"]
    sim.control(timezone="Europe/Berlin")
    assert (await connect(api, tenant, sim.url))["timezone"] == "Europe/Berlin"


async def test_one_unknown_zone_does_not_stop_compaction_for_everyone(metricx_env: Any, caplog: Any) -> None:
    from core.compaction import compact_all

    day = (datetime.now(UTC) - timedelta(days=4)).date()
    good = await make_account("Europe/Berlin", "EUR")
    await add_day(good, day, "Europe/Berlin", "EUR")
    bad = await make_account("UTC", "EUR")
    await add_day(bad, day, "UTC", "EUR")
    async with session_scope() as session:  # stored before zones were validated
        await session.execute(
            text("UPDATE connections SET timezone = 'Mars/Olympus' WHERE id = :c"), {"c": bad}
        )
    with caplog.at_level(logging.WARNING):
        stats = await compact_all()
    assert stats["rows_removed"] > 0 and stats["failed_connections"] == 0
    assert "compaction_skipped" in caplog.text and str(bad) in caplog.text
    async with session_scope() as session:
        hours = await session.scalar(
            text(
                "SELECT count(DISTINCT date_trunc('hour', captured_at)) FROM metric_snapshots "
                "WHERE connection_id = :c"
            ),
            {"c": good},
        )
        rows = await session.scalar(
            text("SELECT count(*) FROM metric_snapshots WHERE connection_id = :c"), {"c": good}
        )
    assert rows == 2 * hours  # one snapshot per entity and hour left: compacted


async def test_a_manual_sync_of_a_reconnect_required_connection_is_a_409_saying_what_to_do(
    api: httpx.AsyncClient, tenant: Tenant, sim: Any
) -> None:
    conn = await connect(api, tenant, sim.url)
    async with session_scope() as session:
        await session.execute(
            text("UPDATE connections SET sync_status = 'reconnect_required' WHERE id = :c"), {"c": conn["id"]}
        )
    url = tenant.url(f"/connections/{conn['id']}/sync")
    refused = await api.post(url, headers=tenant.headers)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "reconnect_required"
    assert "new token" in refused.json()["error"]["message"]
    retried = await api.post(f"{url}?retry_rejected_token=true", headers=tenant.headers)
    assert retried.status_code == 202


async def test_the_operator_key_gets_403_on_every_workspace_data_route(
    api: httpx.AsyncClient, tenant: Tenant, sim: Any
) -> None:
    from fastapi.routing import iter_route_contexts

    app = api._transport.app  # type: ignore[attr-defined]
    openapi = (await api.get("/openapi.json")).json()
    admin = {"/v1/workspaces/{workspace_id}", "/v1/workspaces/{workspace_id}/api-keys"}
    checked = 0
    for context in iter_route_contexts(app.routes):
        path = context.path
        if (
            "{workspace_id}" not in path
            or path in admin
            or path.startswith("/v1/workspaces/{workspace_id}/api-keys")
        ):
            continue
        for method in sorted(set(getattr(context, "methods", None) or ()) - {"HEAD"}):
            url = path.replace("{workspace_id}", tenant.workspace_id)
            for name in ("connection_id", "job_id", "key_id", "webhook_id"):
                url = url.replace("{" + name + "}", "00000000-0000-0000-0000-000000000001")
            response = await api.request(method, url, headers=OPERATOR, json={})
            assert response.status_code == 403, f"{method} {path} -> {response.status_code}"
            assert response.json()["error"]["code"] == "workspace_key_required"
            assert "403" in openapi["paths"][path][method.lower()]["responses"], (
                f"{method} {path}: 403 undocumented"
            )
            checked += 1
    assert checked >= 15
    # ...and manages workspaces and their keys, as documented.
    assert (await api.get(tenant.url(), headers=OPERATOR)).status_code == 200
    assert (await api.get(tenant.url("/api-keys"), headers=OPERATOR)).status_code == 200


async def test_a_paused_connection_takes_no_webhook_data_until_resumed(
    api: httpx.AsyncClient, tenant: Tenant, monkeypatch: Any, run_worker: Any
) -> None:
    import json

    from metricx_shopify.settings import get_shopify_settings

    from tests.security.test_webhook_corpus import ORDER, SECRET, deliver

    monkeypatch.setenv("METRICX_SHOPIFY_WEBHOOK_SECRET", SECRET)
    get_shopify_settings.cache_clear()
    try:
        domain = f"paused-{datetime.now(UTC).timestamp():.0f}.myshopify.com"
        async with session_scope() as session:
            from core.providers import Credentials
            from core.services.accounts import create_connection

            conn = await create_connection(
                session, tenant.workspace_id, "shopify", domain, Credentials(access_token="x"), config={}
            )
            conn_id = conn.id
        paused = await api.post(tenant.url(f"/connections/{conn_id}/pause"), headers=tenant.headers)
        assert paused.status_code == 200
        # acknowledged (Shopify must not retry), then applied by the job to no connection
        ignored = await deliver(api, domain, json.dumps(ORDER).encode())
        assert ignored.status_code == 200 and ignored.json()["status"] == "accepted"
        await run_worker()
        assert await _orders(conn_id) == 0
        await api.post(tenant.url(f"/connections/{conn_id}/resume"), headers=tenant.headers)
        applied = await deliver(api, domain, json.dumps(ORDER).encode())
        assert applied.status_code == 200 and applied.json()["status"] == "accepted"
        await run_worker()
        assert await _orders(conn_id) == 1
    finally:
        get_shopify_settings.cache_clear()


async def _orders(connection_id: Any) -> int:
    from sqlalchemy import text

    async with session_scope() as session:
        found = await session.scalar(
            text("SELECT count(*) FROM shopify_orders WHERE connection_id = :c"), {"c": connection_id}
        )
    return int(found or 0)
