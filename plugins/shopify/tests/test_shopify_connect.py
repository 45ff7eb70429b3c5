"""Connecting a Shopify store with the authorization code grant against the simulator: the shop
domain validated, the callback's HMAC checked, an expiring offline token with its refresh token
stored, and every refusal (bad shop, forged hmac, denial, missing scope, forged or replayed state,
expired code) leaving nothing behind."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from sqlalchemy import text

from core.testing.connect_flow import consent
from core.testing.harness import create_api, get_settings, session_scope
from core.testing.plugin import plugin_environment

OPERATOR = {"Authorization": "Bearer test-operator-key"}
PUBLIC = "http://api.test"
JSON = {"Accept": "application/json"}


@pytest.fixture
async def api(metricx_env: Any, shopify_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    with plugin_environment({"METRICX_PUBLIC_URL": PUBLIC}, redis_url=metricx_env.redis_url):
        get_settings.cache_clear()
        app = create_api()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC) as client:
            yield client
        await app.state.resources.aclose()
    get_settings.cache_clear()


async def tenant(api: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    ws = await api.post("/v1/workspaces", json={"name": f"ws-{uuid.uuid4().hex[:6]}"}, headers=OPERATOR)
    key = await api.post(f"/v1/workspaces/{ws.json()['id']}/api-keys", json={"name": "t"}, headers=OPERATOR)
    return ws.json()["id"], {"Authorization": f"Bearer {key.json()['key']}"}


async def start(api: httpx.AsyncClient, ws: str, headers: dict[str, str], shop: str) -> str:
    started = await api.post(f"/v1/workspaces/{ws}/connect/shopify", json={"shop": shop}, headers=headers)
    assert started.status_code == 201, started.text
    return str(started.json()["authorization_url"])


def back(location: str) -> str:
    parts = urlsplit(location)
    assert parts.path == "/v1/connect/shopify/callback"
    return f"{parts.path}?{parts.query}"


async def stored() -> tuple[int, int, int]:
    """(connections, credentials, connect sessions holding a token) in the whole database."""
    async with session_scope() as session:
        row = (
            await session.execute(
                text(
                    "SELECT (SELECT count(*) FROM connections) AS conns, "
                    "(SELECT count(*) FROM credentials) AS creds, "
                    "(SELECT count(*) FROM connect_sessions WHERE access_token_enc IS NOT NULL) AS tokens"
                )
            )
        ).one()
    return row.conns, row.creds, row.tokens


async def test_a_store_connected_with_an_expiring_offline_token(
    api: httpx.AsyncClient, new_shop: Any
) -> None:
    shop = new_shop(products=2, customers=2, orders=3, timezone="Europe/Berlin", currency="EUR")
    ws, headers = await tenant(api)
    url = await start(api, ws, headers, shop.domain.upper())  # the domain is lowercased
    query = parse_qs(urlsplit(url).query)
    assert urlsplit(url).path == "/admin/oauth/authorize" and "read_orders" in query["scope"][0]
    assert "sim-client-secret" not in url

    location = consent(url)
    callback = parse_qs(urlsplit(location).query)
    assert {"code", "hmac", "host", "shop", "state", "timestamp"} <= callback.keys()
    landed = await api.get(back(location), headers=JSON)
    assert landed.status_code == 200, landed.text
    [account] = landed.json()["accounts"]
    assert (account["external_account_id"], account["currency"]) == (shop.domain, "EUR")

    picked = await api.post(
        f"/v1/workspaces/{ws}/connect/shopify/accounts",
        params={"session": landed.json()["session_id"]},
        json={"accounts": [shop.domain.upper()], "backfill": False},
        headers=headers,
    )
    assert picked.status_code == 201, picked.text
    async with session_scope() as session:
        cred = (
            await session.execute(
                text(
                    "SELECT k.refresh_token_enc IS NOT NULL AS refresh, k.expires_at FROM credentials k "
                    "JOIN connections c ON c.id = k.connection_id WHERE c.workspace_id = :w"
                ),
                {"w": ws},
            )
        ).one()
    assert cred.refresh and 0 < (cred.expires_at - datetime.now(UTC)).total_seconds() <= 3600


async def test_bad_shop_forged_hmac_denial_and_missing_scope(api: httpx.AsyncClient, new_shop: Any) -> None:
    shop = new_shop(products=1, customers=1, orders=1)
    ws, headers = await tenant(api)
    before = await stored()
    bad = await api.post(
        f"/v1/workspaces/{ws}/connect/shopify", json={"shop": "evil.example.com"}, headers=headers
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"

    location = consent(await start(api, ws, headers, shop.domain))
    params = dict(parse_qs(urlsplit(location).query))
    forged = {k: v[0] for k, v in params.items()} | {"hmac": "0" * 64}
    answer = await api.get(f"/v1/connect/shopify/callback?{urlencode(forged)}", headers=JSON)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_signature"

    denied = await api.get(
        back(consent(await start(api, ws, headers, shop.domain), allow=False)), headers=JSON
    )
    assert denied.json()["error"]["code"] == "access_denied"

    narrow = consent(await start(api, ws, headers, shop.domain), uncheck=["read_orders"])
    refused = await api.get(back(narrow), headers=JSON)
    assert refused.json()["error"]["code"] == "insufficient_scope" and "read_orders" in refused.text
    assert await stored() == before


async def test_forged_and_replayed_state_are_refused(api: httpx.AsyncClient, new_shop: Any) -> None:
    shop = new_shop(products=1, customers=1, orders=1)
    ws, headers = await tenant(api)
    before = await stored()
    path = back(consent(await start(api, ws, headers, shop.domain)))
    forged = await api.get(path.replace("state=", "state=x"), headers=JSON)
    assert forged.status_code == 400 and forged.json()["error"]["code"] == "invalid_state"
    assert await stored() == before

    landed = await api.get(path, headers=JSON)  # the real callback still works once
    assert landed.status_code == 200, landed.text
    authorized = await stored()  # the flow now holds the token until an account is picked
    replay = await api.get(path, headers=JSON)
    assert replay.status_code == 400 and replay.json()["error"]["code"] == "state_used"
    assert await stored() == authorized and authorized[:2] == before[:2]  # no connection, no credentials


async def test_an_expired_authorization_code_is_refused(
    api: httpx.AsyncClient, new_shop: Any, shopify_sim: Any
) -> None:
    shop = new_shop(products=1, customers=1, orders=1)
    ws, headers = await tenant(api)
    before = await stored()
    location = consent(await start(api, ws, headers, shop.domain))
    shopify_sim.control("clock", advance_s=11 * 60)  # Shopify's codes live 10 minutes
    expired = await api.get(back(location), headers=JSON)
    assert expired.status_code == 400 and expired.json()["error"]["code"] == "invalid_code"
    assert "was not found or was already used" in expired.json()["error"]["message"]  # Shopify's words
    assert await stored() == before


async def test_the_token_endpoint_refuses_a_used_code_as_shopify_does(
    api: httpx.AsyncClient, new_shop: Any, shopify_sim: Any
) -> None:
    shop = new_shop(products=1, customers=1, orders=1)
    ws, headers = await tenant(api)
    location = consent(await start(api, ws, headers, shop.domain))
    assert (await api.get(back(location), headers=JSON)).status_code == 200
    code = parse_qs(urlsplit(location).query)["code"][0]
    again = httpx.post(
        f"{shopify_sim.url}/admin/oauth/access_token",
        data={"client_id": "sim-client-id", "client_secret": "sim-client-secret", "code": code},
        headers={"X-Shopify-Shop-Domain": shop.domain},
    )
    assert again.status_code == 400
    assert again.json() == {
        "error": "invalid_request",
        "error_description": "The authorization code was not found or was already used",
    }


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (200, None, None),  # the fixture's shop: discovered
        (200, {"data": {"shop": {"myshopifyDomain": "other.myshopify.com"}}}, "invalid_signature"),
        (401, {"errors": "[API] Invalid API key or access token"}, "provider_refused"),
        (
            200,
            {"errors": [{"message": "Access denied", "extensions": {"code": "ACCESS_DENIED"}}]},
            "provider_refused",
        ),
    ],
)
async def test_discovery_reads_the_graphql_shop_query(status: int, body: Any, code: str | None) -> None:
    import json
    from pathlib import Path

    from metricx_shopify import queries
    from metricx_shopify.connect import ShopifyConnector
    from metricx_shopify.settings import ShopifySettings

    from core import ConnectError, Credentials

    fixture = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "graphql_shop.json").read_text())
    if body is not None and "data" in body:  # the fixture's shop, proving another domain
        body["data"]["shop"] = {**fixture["body"]["data"]["shop"], **body["data"]["shop"]}
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(status, json=fixture["body"] if body is None else body)

    connector = ShopifyConnector(ShopifySettings(client_id="id", client_secret="secret"))
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        discover = connector.discover_accounts(
            http, Credentials(access_token="shpat_x"), {"shop": "snowdevil.myshopify.com"}
        )
        if code is None:
            [account] = await discover
            assert (account.name, account.currency, account.timezone) == (
                "Snowdevil",
                "USD",
                "America/New_York",
            )
        else:
            with pytest.raises(ConnectError) as refused:
                await discover
            assert refused.value.code == code and "shpat_x" not in refused.value.message
    [request] = sent
    assert request.method == "POST"
    assert request.url == "https://snowdevil.myshopify.com/admin/api/2026-10/graphql.json"
    assert json.loads(request.content)["query"] == queries.SHOP
    assert request.headers["X-Shopify-Access-Token"] == "shpat_x"
