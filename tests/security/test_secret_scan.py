"""No secret anywhere (issue 19 item 1 and the rule "secrets never in logs, errors, responses"): a realistic
flow through the API, the worker code path, webhooks and errors, then every secret it used is searched
in every log line, every Redis key and value, every table row and every response. 0 hits.

The secrets: the operator key, a workspace API key, access and refresh tokens (accepted, rejected,
malformed), the Shopify webhook secret, the encryption key, and a customer's e-mail address
(personal data: stored in the orders table by design, so searched everywhere but there).
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import httpx
import pytest
from fastapi import Request
from metricx_shopify.settings import get_shopify_settings
from metricx_shopify.webhooks import sign
from sqlalchemy import text

from core.config import Settings
from tests.integration.test_api_support import OPERATOR

SHOPIFY_SECRET = "shpss-scan-" + uuid.uuid4().hex
REFRESH = "tp-refresh-scan-" + uuid.uuid4().hex
REJECTED = "tp-rejected-scan-" + uuid.uuid4().hex
MALFORMED = "tp-malformed-scan-" + uuid.uuid4().hex
EMAIL = f"jane.{uuid.uuid4().hex[:8]}@example.com"


class Recorder:
    """Every response of the flow, and which secret each one may legitimately show once."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.responses: list[tuple[str, str, str | None]] = []  # (what, body, the secret it may show)

    async def __call__(
        self, method: str, url: str, *, shows: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        response = await self.client.request(method, url, **kwargs)
        self.responses.append((f"{method} {url} -> {response.status_code}", response.text, shows))
        return response


async def redis_dump(redis: Any) -> list[tuple[str, bytes]]:
    out = []
    async for key in redis.scan_iter(count=1000):
        kind = (await redis.type(key)).decode()
        if kind == "string":
            value = await redis.get(key) or b""
        elif kind == "hash":
            value = repr(await redis.hgetall(key)).encode()
        elif kind == "list":
            value = repr(await redis.lrange(key, 0, -1)).encode()
        elif kind == "set":
            value = repr(await redis.smembers(key)).encode()
        elif kind == "zset":
            value = repr(await redis.zrange(key, 0, -1, withscores=True)).encode()
        else:
            value = b""
        out.append((key.decode(errors="replace"), value))
    return out


async def table_dump() -> dict[str, str]:
    from core.db.engine import session_scope

    out = {}
    async with session_scope() as session:
        tables = await session.scalars(
            text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1")
        )
        for table in list(tables):
            rows = await session.scalars(text(f'SELECT t::text FROM "{table}" t'))
            out[table] = "\n".join(rows)
    return out


async def test_no_secret_in_any_log_redis_key_table_or_response(
    metricx_env: Any,
    sim: Any,
    run_worker: Any,
    redis_client: Any,
    capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core.api import create_app
    from core.logging import configure_logging

    monkeypatch.setenv("METRICX_SHOPIFY_WEBHOOK_SECRET", SHOPIFY_SECRET)
    get_shopify_settings.cache_clear()
    configure_logging(Settings(log_format="json", log_level="DEBUG"), force=True)
    app = create_app()

    async def crash(request: Request) -> None:
        body = await request.json()  # the audit's 500: a token in the body, in a local, in the message
        access_token = body["credentials"]["access_token"]
        raise RuntimeError(f"cannot store connection: Authorization: Bearer {access_token}")

    app.add_api_route("/v1/_crash", crash, methods=["POST"])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            call = Recorder(client)
            secrets = await flow(call, sim, run_worker)
    finally:
        await app.state.resources.aclose()
        get_shopify_settings.cache_clear()
        logs = capsys.readouterr()
        configure_logging(force=True)
    secrets["encryption key"] = os.environ["METRICX_ENCRYPTION_KEYS"]
    events = {json.loads(line).get("event") for line in logs.err.splitlines() if line.startswith("{")}
    # The flow logged its requests, the worker's syncs and the failures.
    assert {"request_finished", "request_failed", "webhook_unreadable"} <= events, sorted(events)

    hits: list[str] = []
    log_text = logs.out + logs.err
    redis = await redis_dump(redis_client)
    tables = await table_dump()
    assert tables["connections"] and tables["credentials"] and tables["shopify_orders"]
    for name, secret in secrets.items():
        if secret in log_text:
            line = next(line for line in log_text.splitlines() if secret in line)
            hits.append(f"{name} in a log line: {line[:300]}")
        for key, value in redis:
            if secret in key or secret.encode() in value:
                hits.append(f"{name} in Redis key {key}")
        for table, rows in tables.items():
            if secret in rows and not (name == "customer e-mail" and table == "shopify_orders"):
                hits.append(f"{name} in table {table}")
        for what, body, shows in call.responses:
            if secret in body and shows != secret:
                hits.append(f"{name} in response {what}")
    assert not hits, "\n".join(hits)


async def flow(call: Recorder, sim: Any, run_worker: Any) -> dict[str, str]:
    """Connections, syncs through the worker, failures, webhooks: what a day of a deployment does."""
    ws = (await call("POST", "/v1/workspaces", json={"name": "scan"}, headers=OPERATOR)).json()
    base = f"/v1/workspaces/{ws['id']}"
    created = await call("POST", f"{base}/api-keys", json={"name": "scan"}, headers=OPERATOR)
    key = created.json()["key"]
    call.responses[-1] = (*call.responses[-1][:2], key)  # shown once, on creation
    auth = {"Authorization": f"Bearer {key}"}

    def connection(token: str, account: str) -> dict[str, Any]:
        return {
            "provider": "testprovider",
            "external_account_id": account,
            "credentials": {"access_token": token, "refresh_token": REFRESH},
            "config": {"base_url": sim.url},
            "backfill": True,
        }

    conn = await call(
        "POST", f"{base}/connections", json=connection("tp-valid-token", "acct-scan"), headers=auth
    )
    assert conn.status_code == 201, conn.text
    cid = conn.json()["id"]
    rejected = await call(
        "POST", f"{base}/connections", json=connection(REJECTED, "acct-scan-2"), headers=auth
    )
    assert rejected.status_code == 422
    crlf = await call(
        "POST", f"{base}/connections", json=connection(MALFORMED + "\r\nX: 1", "a3"), headers=auth
    )
    assert crlf.status_code == 422
    await call("POST", "/v1/_crash", json=connection(MALFORMED, "a4"), headers=auth)
    await call("GET", f"{base}/connections", headers={"Authorization": f"Bearer {REJECTED}"})
    await run_worker()

    sim.control(transient=1)
    await call("POST", f"{base}/connections/{cid}/sync", headers=auth)
    await run_worker()
    sim.control(revoked=True)
    await call("POST", f"{base}/connections/{cid}/sync", headers=auth)
    await run_worker()
    sim.control(reset=True)
    for path in ("", f"/connections/{cid}", "/jobs", f"/connections/{cid}/runs"):
        await call("GET", f"{base}{path}", headers=auth)

    await shop_webhooks(call)
    await run_worker()  # the accepted delivery is applied by its job (the inbox keeps no payload after)
    return {
        "operator key": OPERATOR["Authorization"].split()[1],
        "workspace API key": key,
        "access token": "tp-valid-token",
        "refresh token": REFRESH,
        "rejected token": REJECTED,
        "malformed token": MALFORMED,
        "Shopify webhook secret": SHOPIFY_SECRET,
        "customer e-mail": EMAIL,
    }


async def shop_webhooks(call: Recorder) -> None:
    from core.db.engine import session_scope
    from core.providers import Credentials
    from core.services import create_workspace
    from core.services.accounts import create_connection

    domain = f"scan-{uuid.uuid4().hex[:6]}.myshopify.com"
    async with session_scope() as session:
        ws = await create_workspace(session, "scan-shop")
        await create_connection(
            session,
            ws.id,
            "shopify",
            domain,
            Credentials(access_token="shpat_scan"),
            config={"shop_domain": domain},
        )
    order = {
        "id": 4501,
        "email": EMAIL,
        "customer": {"id": 77, "email": EMAIL},
        "updated_at": "2026-11-30T10:00:00+00:00",
        "total_price": "10.00",
        "line_items": [],
    }
    for body, secret in (
        (order, SHOPIFY_SECRET),
        ({**order, "total_price": "1e40"}, SHOPIFY_SECRET),  # unstorable: 422
        (order, "wrong-secret"),  # 401
    ):
        raw = json.dumps(body).encode()
        await call(
            "POST",
            "/v1/plugins/shopify/webhooks",
            content=raw,
            headers={
                "X-Shopify-Topic": "orders/updated",
                "X-Shopify-Hmac-Sha256": sign(raw, secret),
                "X-Shopify-Shop-Domain": domain,
                "X-Shopify-Webhook-Id": str(uuid.uuid4()),
            },
        )
