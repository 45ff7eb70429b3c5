"""Fixtures and helpers shared by the API tests (imported by them; holds no tests itself)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest

OPERATOR = {"Authorization": "Bearer test-operator-key"}
ADS = [f"c{c}a{a}" for c in range(2) for a in range(3)]


@dataclass
class Tenant:
    workspace_id: str
    key: str
    name: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def url(self, path: str = "") -> str:
        return f"/v1/workspaces/{self.workspace_id}{path}"


@pytest.fixture
async def api(metricx_env: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The real app over ASGI, against the session's PostgreSQL and Redis."""
    from core.api import create_app

    app = create_app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://metricx.test") as client:
        yield client
    await app.state.resources.aclose()


async def new_tenant(client: httpx.AsyncClient, name: str | None = None) -> Tenant:
    """A workspace (operator key) and one API key for it, through the API."""
    name = name or f"ws-{uuid.uuid4().hex[:6]}"
    ws = await client.post("/v1/workspaces", json={"name": name}, headers=OPERATOR)
    assert ws.status_code == 201, ws.text
    workspace_id = ws.json()["id"]
    key = await client.post(
        f"/v1/workspaces/{workspace_id}/api-keys", json={"name": "tests"}, headers=OPERATOR
    )
    assert key.status_code == 201, key.text
    return Tenant(workspace_id, key.json()["key"], name)


@pytest.fixture
async def tenant(api: httpx.AsyncClient) -> Tenant:
    return await new_tenant(api)


async def connect(
    client: httpx.AsyncClient,
    tenant: Tenant,
    sim_url: str,
    *,
    token: str = "tp-valid-token",
    backfill: bool = False,
    account: str | None = None,
) -> dict[str, Any]:
    """Create a test-provider connection through the API; returns the response body."""
    response = await client.post(
        tenant.url("/connections"),
        json={
            "provider": "testprovider",
            "external_account_id": account or f"acct-{uuid.uuid4().hex[:8]}",
            "credentials": {"access_token": token},
            "config": {"base_url": sim_url},
            "backfill": backfill,
        },
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def truth(account: str, day: date) -> dict[str, Any]:
    """The simulator's ground truth for one day: the sum over its ads."""
    from metricx_testprovider.simulator import ad_numbers

    rows = [ad_numbers(account, ad, day) for ad in ADS]
    return {
        "impressions": sum(r["impressions"] for r in rows),
        "clicks": sum(r["clicks"] for r in rows),
        "spend": sum(Decimal(r["spend"]) for r in rows),
        "conversions": sum(Decimal(r["conversions"]) for r in rows),
        "revenue": sum(Decimal(r["revenue"]) for r in rows),
    }


def as_numbers(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "impressions": row["impressions"],
        "clicks": row["clicks"],
        "spend": Decimal(str(row["spend"])),
        "conversions": Decimal(str(row["conversions"])),
        "revenue": Decimal(str(row["revenue"])),
    }


async def wait_for_job(
    client: httpx.AsyncClient, tenant: Tenant, job_id: str, timeout_s: float = 60
) -> dict[str, Any]:
    """Poll the job endpoint until the job is complete or failed."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = await client.get(tenant.url(f"/jobs/{job_id}"), headers=tenant.headers)
        assert response.status_code == 200, response.text
        body = dict(response.json())
        if body["status"] in {"complete", "failed"}:
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s}s")
