"""Connecting Google Ads accounts with OAuth (PKCE, offline access) against the simulator: a manager
and its clients discovered, two clients connected through the manager, and every refusal."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from metricx_google.connect import ADWORDS_SCOPE, _token_error
from metricx_google.simulator import (
    CHILD_BERLIN_ID,
    CHILD_NY_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    MANAGER_ID,
    SimState,
    create_app,
)
from sqlalchemy import text

from core.testing.connect_flow import consent
from core.testing.harness import create_api, get_settings, session_scope
from core.testing.http import serve_app
from core.testing.plugin import plugin_environment

OPERATOR = {"Authorization": "Bearer test-operator-key"}
PUBLIC = "http://api.test"
JSON = {"Accept": "application/json"}
FIXTURES = Path(__file__).parents[1] / "fixtures"


@pytest.fixture
def google_sim(metricx_env: Any) -> Iterator[str]:
    with serve_app(create_app(SimState(now=datetime.now(UTC)))) as url:
        env = {
            "METRICX_GOOGLE_BASE_URL": url,
            "METRICX_GOOGLE_TOKEN_URL": f"{url}/token",
            "METRICX_GOOGLE_AUTH_URL": f"{url}/o/oauth2/v2/auth",
            "METRICX_GOOGLE_CLIENT_ID": DEFAULT_CLIENT_ID,
            "METRICX_GOOGLE_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
            "METRICX_PUBLIC_URL": PUBLIC,
        }
        with plugin_environment(env, redis_url=metricx_env.redis_url):
            get_settings.cache_clear()
            yield url
            get_settings.cache_clear()


@pytest.fixture
async def api(google_sim: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_api()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC) as client:
        yield client
    await app.state.resources.aclose()


async def tenant(api: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    ws = await api.post("/v1/workspaces", json={"name": f"ws-{uuid.uuid4().hex[:6]}"}, headers=OPERATOR)
    key = await api.post(f"/v1/workspaces/{ws.json()['id']}/api-keys", json={"name": "t"}, headers=OPERATOR)
    return ws.json()["id"], {"Authorization": f"Bearer {key.json()['key']}"}


async def start(api: httpx.AsyncClient, ws: str, headers: dict[str, str]) -> str:
    started = await api.post(f"/v1/workspaces/{ws}/connect/google", headers=headers)
    assert started.status_code == 201, started.text
    return str(started.json()["authorization_url"])


def back(location: str) -> str:
    parts = urlsplit(location)
    assert parts.path == "/v1/connect/google/callback"
    return f"{parts.path}?{parts.query}"


async def stored() -> tuple[int, int]:
    async with session_scope() as session:
        row = (
            await session.execute(
                text(
                    "SELECT (SELECT count(*) FROM credentials) AS creds, "
                    "(SELECT count(*) FROM connect_sessions WHERE access_token_enc IS NOT NULL) AS tokens"
                )
            )
        ).one()
    return row.creds, row.tokens


async def test_a_manager_and_its_clients_two_connected_through_it(api: httpx.AsyncClient) -> None:
    ws, headers = await tenant(api)
    url = await start(api, ws, headers)
    query = parse_qs(urlsplit(url).query)
    assert query["access_type"] == ["offline"] and query["prompt"] == ["consent"]
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert DEFAULT_CLIENT_SECRET not in url

    landed = await api.get(back(consent(url)), headers=JSON)
    assert landed.status_code == 200, landed.text
    found = {a["external_account_id"]: a for a in landed.json()["accounts"]}
    assert set(found) == {MANAGER_ID, CHILD_NY_ID, CHILD_BERLIN_ID}
    assert not found[MANAGER_ID]["connectable"] and "manager" in found[MANAGER_ID]["note"]
    assert (found[CHILD_BERLIN_ID]["timezone"], found[CHILD_BERLIN_ID]["currency"]) == (
        "Europe/Berlin",
        "EUR",
    )
    assert "1//sim-" not in landed.text and "ya29." not in landed.text

    session = landed.json()["session_id"]
    manager = await api.post(
        f"/v1/workspaces/{ws}/connect/google/accounts",
        params={"session": session},
        json={"accounts": [MANAGER_ID]},
        headers=headers,
    )
    assert manager.status_code == 422 and "manager" in manager.json()["error"]["message"]
    dashed = f"{CHILD_BERLIN_ID[:3]}-{CHILD_BERLIN_ID[3:6]}-{CHILD_BERLIN_ID[6:]}"
    picked = await api.post(
        f"/v1/workspaces/{ws}/connect/google/accounts",
        params={"session": session},
        json={"accounts": [CHILD_NY_ID, dashed], "backfill": False},
        headers=headers,
    )
    assert picked.status_code == 201, picked.text
    connections = picked.json()["connections"]
    assert sorted(c["external_account_id"] for c in connections) == sorted([CHILD_NY_ID, CHILD_BERLIN_ID])
    assert all(c["config"] == {"login_customer_id": MANAGER_ID} for c in connections)
    assert {c["timezone"] for c in connections} == {"America/New_York", "Europe/Berlin"}


async def test_clients_of_a_sub_manager_are_found_and_connect_through_the_top_manager(
    api: httpx.AsyncClient, google_sim: str, run_worker: Any
) -> None:
    """An agency's manager holds a sub-manager with its own clients (level 2 of the hierarchy):
    discovery lists them, and a connection reached through the top manager syncs."""
    async with httpx.AsyncClient(base_url=google_sim) as sim:
        sub = await sim.post(
            "/_sim/accounts", json={"manager": True, "manager_id": MANAGER_ID, "name": "Sub"}
        )
        assert sub.status_code == 201, sub.text
        sub_id = sub.json()["customer_id"]
        leaf = await sim.post("/_sim/accounts", json={"manager_id": sub_id, "name": "Leaf client"})
        leaf_id = leaf.json()["customer_id"]
    ws, headers = await tenant(api)
    landed = await api.get(back(consent(await start(api, ws, headers))), headers=JSON)
    found = {a["external_account_id"]: a for a in landed.json()["accounts"]}
    assert not found[sub_id]["connectable"] and "manager" in found[sub_id]["note"]
    assert found[leaf_id]["connectable"] and found[leaf_id]["name"] == "Leaf client"
    picked = await api.post(
        f"/v1/workspaces/{ws}/connect/google/accounts",
        params={"session": landed.json()["session_id"]},
        json={"accounts": [leaf_id], "backfill": False},
        headers=headers,
    )
    assert picked.status_code == 201, picked.text
    (connection,) = picked.json()["connections"]
    assert connection["config"] == {"login_customer_id": MANAGER_ID}
    synced = await api.post(f"/v1/workspaces/{ws}/connections/{connection['id']}/sync", headers=headers)
    assert synced.status_code in (200, 202), synced.text
    await run_worker()
    after = await api.get(f"/v1/workspaces/{ws}/connections/{connection['id']}", headers=headers)
    assert (after.json()["sync_status"], after.json()["last_sync_error"]) == ("idle", None), after.text


async def test_refusals_store_nothing(api: httpx.AsyncClient, google_sim: str) -> None:
    ws, headers = await tenant(api)
    before = await stored()

    denied = await api.get(back(consent(await start(api, ws, headers), allow=False)), headers=JSON)
    assert denied.status_code == 400 and denied.json()["error"]["code"] == "access_denied"

    narrow = await api.get(
        back(consent(await start(api, ws, headers), uncheck=[ADWORDS_SCOPE])), headers=JSON
    )
    assert narrow.status_code == 400 and narrow.json()["error"]["code"] == "insufficient_scope"

    location = consent(await start(api, ws, headers))
    httpx.post(f"{google_sim}/_sim/clock", json={"advance_s": 11 * 60}).raise_for_status()
    expired = await api.get(back(location), headers=JSON)
    assert expired.status_code == 400 and expired.json()["error"]["code"] == "invalid_code"
    replay = await api.get(back(location), headers=JSON)
    assert replay.json()["error"]["code"] == "state_used"

    forged = back(location).replace("state=", "state=A")
    assert (await api.get(forged, headers=JSON)).json()["error"]["code"] == "invalid_state"
    assert await stored() == before


def test_the_token_endpoints_refusal_in_googles_shape() -> None:
    body = json.loads((FIXTURES / "oauth_code_invalid_grant.json").read_text())["body"]
    assert _token_error(body).code == "invalid_code"
