"""The dashboard over ASGI with real PostgreSQL and Redis: sign-in, CSRF, tenancy, actions, charts, docs."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts

from tests.conftest import fetch_one
from tests.integration.test_api_support import Tenant, api, connect, new_tenant, tenant

__all__ = ["api", "tenant"]  # fixtures

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
async def browser(api: httpx.AsyncClient) -> AsyncIterator[Any]:
    """``await browser()``: a new cookie-keeping client on the same app (one per simulated browser)."""
    clients: list[httpx.AsyncClient] = []

    async def make(base_url: str = "http://metricx.test") -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=api._transport, base_url=base_url)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def sign_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    form = await client.get("/login")
    assert form.status_code == 200
    csrf = CSRF.search(form.text)
    assert csrf is not None
    return await client.post("/login", data={"csrf": csrf.group(1), "api_key": key})


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, html[:500]
    return found.group(1)


async def test_root_redirects_and_pages_need_a_session(api: httpx.AsyncClient) -> None:
    root = await api.get("/")
    assert root.status_code == 307 and root.headers["location"] == "/dashboard"
    page = await api.get("/dashboard")
    assert page.status_code == 303 and page.headers["location"] == "/login"
    assert (await api.get("/dashboard/_live/connections")).status_code == 401


async def test_sign_in_sets_a_safe_cookie_and_sign_out_ends_the_session(browser: Any, tenant: Tenant) -> None:
    client = await browser()
    signed = await sign_in(client, tenant.key)
    assert signed.status_code == 303 and signed.headers["location"] == "/dashboard"
    cookie = signed.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    assert tenant.key not in signed.headers["location"] and tenant.key not in cookie
    home = await client.get("/dashboard")
    assert home.status_code == 200 and "No connections yet" in home.text
    assert home.headers["content-security-policy"].startswith("default-src 'self'")
    old_cookie = client.cookies.get("metricx_session")
    out = await client.post("/logout", data={"csrf": csrf_of(home.text)})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    # The session is gone server-side: replaying the old cookie does not sign in.
    client.cookies.set("metricx_session", old_cookie or "")
    replay = await client.get("/dashboard")
    assert replay.status_code == 303 and replay.headers["location"] == "/login"


async def test_revoking_the_key_signs_its_sessions_out(browser: Any, tenant: Tenant) -> None:
    client = await browser()
    await sign_in(client, tenant.key)
    assert (await client.get("/dashboard")).status_code == 200
    from sqlalchemy import text

    from core.db.engine import session_scope
    from core.services import hash_key

    async with session_scope() as session:
        await session.execute(
            text("UPDATE api_keys SET revoked_at = now() WHERE key_hash = :h"), {"h": hash_key(tenant.key)}
        )
    gone = await client.get("/dashboard")
    assert gone.status_code == 303 and gone.headers["location"] == "/login"


async def test_cookie_is_secure_over_https(browser: Any, tenant: Tenant) -> None:
    client = await browser("https://metricx.test")
    signed = await sign_in(client, tenant.key)
    assert signed.status_code == 303
    assert "secure" in signed.headers["set-cookie"].lower()


async def test_sign_in_refuses_a_bad_key_or_a_missing_csrf_token(browser: Any, tenant: Tenant) -> None:
    client = await browser()
    bad = await sign_in(client, "mx_not-a-key")
    assert bad.status_code == 401 and "unknown or revoked" in bad.text
    no_csrf = await client.post("/login", data={"api_key": tenant.key})
    assert no_csrf.status_code == 403 and "metricx_session" not in client.cookies


async def test_connections_table_shows_status_freshness_and_attention(
    api: httpx.AsyncClient, browser: Any, tenant: Tenant, sim: Any
) -> None:
    fine = await connect(api, tenant, sim.url)
    broken = await connect(api, tenant, sim.url)
    from sqlalchemy import text

    from core.db.engine import session_scope

    async with session_scope() as session:
        await session.execute(
            text(
                "UPDATE connections SET sync_status='reconnect_required', last_sync_error='token revoked', "
                "last_sync_completed_at = now() - interval '4 minutes' WHERE id = :id"
            ),
            {"id": broken["id"]},
        )
    client = await browser()
    await sign_in(client, tenant.key)
    table = (await client.get("/dashboard")).text
    assert fine["id"] in table and broken["id"] in table
    assert "synced 4 min ago" in table and "token revoked" in table and "reconnect" in table
    attention = (await client.get("/dashboard?attention=true")).text
    assert broken["id"] in attention and fine["id"] not in attention
    live = await client.get("/dashboard/_live/connections?attention=true")
    assert live.status_code == 200 and broken["id"] in live.text and "<html" not in live.text


async def test_another_workspace_cannot_see_or_act_on_a_connection(
    api: httpx.AsyncClient, browser: Any, tenant: Tenant, sim: Any
) -> None:
    conn = await connect(api, tenant, sim.url)
    other = await new_tenant(api)
    client = await browser()
    await sign_in(client, other.key)
    home = await client.get("/dashboard")
    assert conn["id"] not in home.text
    csrf = csrf_of(home.text)
    page = await client.get(f"/dashboard/connections/{conn['id']}")
    assert page.status_code == 404 and conn["id"] not in page.text
    assert (await client.get(f"/dashboard/connections/{conn['id']}/_live")).status_code == 404
    for action in ("pause", "sync", "resume", "reconnect"):
        acted = await client.post(f"/dashboard/connections/{conn['id']}/{action}", data={"csrf": csrf})
        assert acted.status_code == 404 and conn["id"] not in acted.text
    # Every dashboard route that takes a connection id was tried above (a new one must be added here).
    app = api._transport.app  # type: ignore[attr-defined]
    with_ids = {c.path for c in iter_route_contexts(app.routes) if "{connection_id}" in c.path}
    assert {p for p in with_ids if p.startswith("/dashboard/")} == {
        "/dashboard/connections/{connection_id}",
        "/dashboard/connections/{connection_id}/_live",
        "/dashboard/connections/{connection_id}/{action}",
    }
    row = await fetch_one("SELECT status, sync_status FROM connections WHERE id = :id", id=conn["id"])
    assert (row.status, row.sync_status) == ("active", "idle")


async def test_actions_need_csrf_and_pause_resume_sync_work(
    api: httpx.AsyncClient, browser: Any, tenant: Tenant, sim: Any
) -> None:
    conn = await connect(api, tenant, sim.url)
    client = await browser()
    await sign_in(client, tenant.key)
    url = f"/dashboard/connections/{conn['id']}"
    csrf = csrf_of((await client.get(url)).text)
    forged = await client.post(f"{url}/pause", data={"csrf": "forged"})
    assert forged.status_code == 403
    assert (
        await fetch_one("SELECT status FROM connections WHERE id = :id", id=conn["id"])
    ).status == "active"
    paused = await client.post(f"{url}/pause", data={"csrf": csrf}, follow_redirects=True)
    assert "Paused" in paused.text
    assert (
        await fetch_one("SELECT status FROM connections WHERE id = :id", id=conn["id"])
    ).status == "paused"
    refused = await client.post(f"{url}/sync", data={"csrf": csrf}, follow_redirects=True)
    assert "resume it first" in refused.text
    await client.post(f"{url}/resume", data={"csrf": csrf})
    synced = await client.post(f"{url}/sync", data={"csrf": csrf}, follow_redirects=True)
    assert "Sync queued" in synced.text
    # Only notice codes travel in the URL: arbitrary text is never echoed into the page.
    injected = await client.get(url, params={"notice": "Send your API key to evil.example"})
    assert "evil.example" not in injected.text
    row = await fetch_one("SELECT status, current_job_id FROM connections WHERE id = :id", id=conn["id"])
    assert row.status == "active" and row.current_job_id.startswith(f"sync:{conn['id']}:realtime:")


async def test_charts_show_the_api_numbers(
    api: httpx.AsyncClient, browser: Any, tenant: Tenant, sim: Any, run_worker: Any
) -> None:
    conn = await connect(api, tenant, sim.url)
    sync = await api.post(
        tenant.url(f"/connections/{conn['id']}/sync"), json={"mode": "attribution"}, headers=tenant.headers
    )
    assert sync.status_code == 202
    await run_worker()
    today = datetime.now(UTC).date()
    metrics = await api.get(
        tenant.url(f"/connections/{conn['id']}/metrics"),
        params={"start": (today - timedelta(days=29)).isoformat(), "end": today.isoformat()},
        headers=tenant.headers,
    )
    expected = {r["metrics_date"]: Decimal(str(r["spend"])) for r in metrics.json()["items"]}
    assert len(expected) >= 7
    client = await browser()
    await sign_in(client, tenant.key)
    html = (await client.get(f"/dashboard/connections/{conn['id']}")).text
    spend_chart = html[html.index('id="chart-spend"') : html.index('id="chart-conversions"')]
    bars = dict(re.findall(r'data-day="([^"]+)" data-value="([^"]+)"', spend_chart))
    assert len(bars) == 30
    assert {day: Decimal(v) for day, v in bars.items() if day in expected} == expected
    assert all(Decimal(v) == 0 for day, v in bars.items() if day not in expected)


async def test_docs_and_redoc_load_only_local_assets(api: httpx.AsyncClient) -> None:
    for path in ("/docs", "/redoc"):
        page = await api.get(path)
        assert page.status_code == 200
        urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
        assert urls and all(u.startswith("/") for u in urls), urls
        for url in urls:
            if url.startswith("/_static/"):
                assert (await api.get(url)).status_code == 200, url
    assert (await api.get("/openapi.json")).status_code == 200


async def test_reconnect_starts_the_connect_flow_or_says_why_it_cannot(
    api: httpx.AsyncClient, browser: Any, tenant: Tenant, sim: Any
) -> None:
    conn = await connect(api, tenant, sim.url)
    client = await browser()
    await sign_in(client, tenant.key)
    url = f"/dashboard/connections/{conn['id']}"
    page = (await client.get(url)).text
    assert "not landed" not in page and "log in at testprovider again" in page
    assert (await client.post(f"{url}/reconnect", data={"csrf": "forged"})).status_code == 403
    # The test provider has no OAuth connector: the page says so, nothing changes.
    refused = await client.post(f"{url}/reconnect", data={"csrf": csrf_of(page)})
    assert refused.status_code == 404 and "has no connect flow" in refused.text
    row = await fetch_one("SELECT status, sync_status FROM connections WHERE id = :id", id=conn["id"])
    assert (row.status, row.sync_status) == ("active", "idle")
