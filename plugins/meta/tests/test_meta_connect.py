"""Connecting Meta ad accounts through Facebook Login against the simulator: the API's connect flow,
its refusals (denied, forged or replayed state, expired code, missing permission), and tenancy."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from metricx_meta.simulator import (
    DEFAULT_TOKEN,
    SIM_APP_ID,
    SIM_APP_SECRET,
    SimState,
    create_app,
    seed_account,
)
from sqlalchemy import text

from core import Credentials
from core.testing.connect_flow import consent
from core.testing.harness import create_api, create_connection, get_settings, session_scope
from core.testing.http import serve_app
from core.testing.plugin import plugin_environment

OPERATOR = {"Authorization": "Bearer test-operator-key"}
PUBLIC = "http://api.test"


def accounts(today: Any) -> list[Any]:
    return [
        seed_account("3001", campaigns=1, adsets_per_campaign=1, ads_per_adset=2, seed=3, today=today),
        seed_account(
            "3002", campaigns=1, adsets_per_campaign=1, ads_per_adset=2, currency="EUR",
            timezone="Europe/Berlin", seed=4, today=today,
        ),
        seed_account("3003", campaigns=1, adsets_per_campaign=1, ads_per_adset=1, seed=5, today=today),
    ]  # fmt: skip


@pytest.fixture
def meta_sim(metricx_env: Any) -> Iterator[tuple[SimState, str]]:
    state = SimState(accounts, now=datetime.now(UTC))
    with serve_app(create_app(state)) as url:
        env = {
            "METRICX_META_BASE_URL": url,
            "METRICX_META_OAUTH_DIALOG_URL": url,
            "METRICX_META_APP_ID": SIM_APP_ID,
            "METRICX_META_APP_SECRET": SIM_APP_SECRET,
            "METRICX_META_ASYNC_POLL_INTERVAL_S": "0.1",
            "METRICX_PUBLIC_URL": PUBLIC,
        }
        with plugin_environment(env, redis_url=metricx_env.redis_url):
            get_settings.cache_clear()
            yield state, url
            get_settings.cache_clear()


@pytest.fixture
async def api(meta_sim: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_api()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC) as client:
        yield client
    await app.state.resources.aclose()


async def tenant(api: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    ws = await api.post("/v1/workspaces", json={"name": f"ws-{uuid.uuid4().hex[:6]}"}, headers=OPERATOR)
    key = await api.post(f"/v1/workspaces/{ws.json()['id']}/api-keys", json={"name": "t"}, headers=OPERATOR)
    return ws.json()["id"], {"Authorization": f"Bearer {key.json()['key']}"}


async def start(api: httpx.AsyncClient, ws: str, headers: dict[str, str]) -> str:
    started = await api.post(f"/v1/workspaces/{ws}/connect/meta", headers=headers)
    assert started.status_code == 201, started.text
    return str(started.json()["authorization_url"])


def callback_path(location: str) -> str:
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC and parts.path == "/v1/connect/meta/callback"
    return f"{parts.path}?{parts.query}"


async def counts() -> tuple[int, int, int]:
    async with session_scope() as session:
        row = (
            await session.execute(
                text(
                    "SELECT (SELECT count(*) FROM connections) AS c, "
                    "(SELECT count(*) FROM credentials) AS k, "
                    "(SELECT count(*) FROM connect_sessions WHERE access_token_enc IS NOT NULL) AS tokens"
                )
            )
        ).one()
    return row.c, row.k, row.tokens


async def test_connect_two_accounts_sharing_one_long_lived_token(api: httpx.AsyncClient) -> None:
    ws, headers = await tenant(api)
    url = await start(api, ws, headers)
    query = parse_qs(urlsplit(url).query)
    assert urlsplit(url).path.endswith("/dialog/oauth") and query["scope"] == ["ads_read"]
    assert query["client_id"] == [SIM_APP_ID] and SIM_APP_SECRET not in url

    landed = await api.get(callback_path(consent(url)), headers={"Accept": "application/json"})
    assert landed.status_code == 200, landed.text
    found = landed.json()
    assert {a["external_account_id"] for a in found["accounts"]} == {"3001", "3002", "3003"}
    assert "sim-user-" not in landed.text  # no token in the answer

    listed = await api.get(
        f"/v1/workspaces/{ws}/connect/meta/accounts", params={"session": found["session_id"]}, headers=headers
    )
    berlin = next(a for a in listed.json()["accounts"] if a["external_account_id"] == "3002")
    assert (berlin["currency"], berlin["timezone"], berlin["already_connected"]) == (
        "EUR",
        "Europe/Berlin",
        False,
    )

    picked = await api.post(
        f"/v1/workspaces/{ws}/connect/meta/accounts",
        params={"session": found["session_id"]},
        json={"accounts": ["act_3001", "3002"], "backfill": False},
        headers=headers,
    )
    assert picked.status_code == 201, picked.text
    assert sorted(c["external_account_id"] for c in picked.json()["connections"]) == ["3001", "3002"]
    async with session_scope() as session:
        creds = (
            await session.execute(
                text(
                    "SELECT k.grant_id, k.expires_at FROM credentials k "
                    "JOIN connections c ON c.id = k.connection_id WHERE c.workspace_id = :w"
                ),
                {"w": ws},
            )
        ).all()
    assert len(creds) == 2 and len({c.grant_id for c in creds}) == 1
    assert all((c.expires_at - datetime.now(UTC)).days >= 59 for c in creds)  # the long-lived token's expiry

    # the same account under Meta's other spelling cannot be connected twice
    again = await api.post(
        f"/v1/workspaces/{ws}/connections",
        json={
            "provider": "meta",
            "external_account_id": "act_3002",
            "credentials": {"access_token": DEFAULT_TOKEN},
            "backfill": False,
        },
        headers=headers,
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "connection_exists"
    listed = await api.get(
        f"/v1/workspaces/{ws}/connect/meta/accounts", params={"session": found["session_id"]}, headers=headers
    )
    assert listed.status_code == 409  # the session is completed: its tokens are gone


async def test_denied_consent_stores_nothing(api: httpx.AsyncClient) -> None:
    ws, headers = await tenant(api)
    before = await counts()
    landed = await api.get(callback_path(consent(await start(api, ws, headers), allow=False)))
    assert landed.status_code == 400 and 'data-code="access_denied"' in landed.text
    assert "Deny" in landed.text and await counts() == before


async def test_forged_and_replayed_state_are_refused(api: httpx.AsyncClient) -> None:
    ws, headers = await tenant(api)
    location = consent(await start(api, ws, headers))
    path = callback_path(location)
    forged = path.replace("state=", "state=x")
    answer = await api.get(forged, headers={"Accept": "application/json"})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_state"
    ok = await api.get(path, headers={"Accept": "application/json"})
    assert ok.status_code == 200
    before = await counts()
    replay = await api.get(path, headers={"Accept": "application/json"})
    assert replay.status_code == 400 and replay.json()["error"]["code"] == "state_used"
    assert await counts() == before


async def test_expired_code_and_missing_permission(api: httpx.AsyncClient, meta_sim: Any) -> None:
    _, sim_url = meta_sim
    ws, headers = await tenant(api)
    before = await counts()
    location = consent(await start(api, ws, headers))
    httpx.post(f"{sim_url}/_sim/clock", json={"advance_s": 11 * 60}).raise_for_status()
    expired = await api.get(callback_path(location), headers={"Accept": "application/json"})
    assert expired.status_code == 400 and expired.json()["error"]["code"] == "invalid_code"
    assert "expired" in expired.json()["error"]["message"]

    location = consent(await start(api, ws, headers), uncheck=["ads_read"])
    narrow = await api.get(callback_path(location))
    assert narrow.status_code == 400 and 'data-code="insufficient_scope"' in narrow.text
    assert "ads_read" in narrow.text
    assert await counts() == before


async def test_a_flow_lands_only_in_its_own_workspace(api: httpx.AsyncClient) -> None:
    ws_a, headers_a = await tenant(api)
    ws_b, headers_b = await tenant(api)
    landed = await api.get(
        callback_path(consent(await start(api, ws_a, headers_a))), headers={"Accept": "application/json"}
    )
    session_id = landed.json()["session_id"]
    assert landed.json()["workspace_id"] == ws_a
    for method in ("GET", "POST"):
        stolen = await api.request(
            method,
            f"/v1/workspaces/{ws_b}/connect/meta/accounts",
            params={"session": session_id},
            json={"accounts": ["3001"]},
            headers=headers_b,
        )
        assert stolen.status_code == 404, stolen.text
        assert "3001" not in stolen.text
    # another key of workspace A did not start this flow either
    key = await api.post(f"/v1/workspaces/{ws_a}/api-keys", json={"name": "other"}, headers=OPERATOR)
    other = {"Authorization": f"Bearer {key.json()['key']}"}
    listed = await api.get(
        f"/v1/workspaces/{ws_a}/connect/meta/accounts", params={"session": session_id}, headers=other
    )
    assert listed.status_code == 404


@pytest.mark.parametrize("name", ["oauth_code_expired.json", "oauth_code_used.json"])
def test_token_endpoint_errors_in_metas_shape(name: str) -> None:
    from meta_helpers import load_fixture
    from metricx_meta.connect import _error

    fixture = load_fixture(name)
    assert _error(fixture["body"]["error"]).code == fixture["expect"]["code"]


async def test_a_declined_permission_is_not_a_granted_scope() -> None:
    from meta_helpers import load_fixture
    from metricx_meta.connect import MetaConnector
    from metricx_meta.settings import MetaSettings
    from pydantic import SecretStr

    token, perms = (
        load_fixture("oauth_access_token.json")["body"],
        load_fixture("oauth_permissions.json")["body"],
    )

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=perms if request.url.path.endswith("/me/permissions") else token)

    settings = MetaSettings(app_id="1", app_secret=SecretStr("s"), base_url="https://graph.test")
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        with pytest.raises(Exception) as refused:
            await MetaConnector(settings).exchange_code(
                http, code="c", redirect_uri="https://x/cb", code_verifier=None, params={}
            )
    assert getattr(refused.value, "code", None) == "insufficient_scope"


def _cli_env(metricx_env: Any, sim_url: str, public: str) -> dict[str, str]:
    import os

    return {
        **os.environ,
        **metricx_env.env,
        "METRICX_META_BASE_URL": sim_url,
        "METRICX_META_OAUTH_DIALOG_URL": sim_url,
        "METRICX_META_APP_ID": SIM_APP_ID,
        "METRICX_META_APP_SECRET": SIM_APP_SECRET,
        "METRICX_PUBLIC_URL": public,
        "COLUMNS": "200",
    }


def _metricx() -> str:
    import shutil
    import sys
    from pathlib import Path

    return shutil.which("metricx", path=str(Path(sys.executable).parent)) or "metricx"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["listen", "paste", "code"])
def test_cli_connect(mode: str, meta_sim: Any, metricx_env: Any) -> None:
    """`metricx connect meta`: the URL printed, the browser's return caught by a local listener (or
    the redirect URL pasted, or only its code), the accounts listed and the picked ones connected."""
    import json
    import subprocess

    from core.testing.servers import free_port

    _, sim_url = meta_sim
    public = f"http://127.0.0.1:{free_port()}"
    env = _cli_env(metricx_env, sim_url, public)
    made = subprocess.run(
        [_metricx(), "workspaces", "create", "cli", "--json"], env=env, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    ws = json.loads(made.stdout)["id"]
    args = [_metricx(), "connect", "meta", "-w", ws, "--json", "--no-backfill"]
    args += ["--listen", "--all"] if mode == "listen" else ["-a", "act_3001", "-a", "3003"]
    proc = subprocess.Popen(
        args, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdin is not None
    url = proc.stdout.readline().strip()
    assert url.startswith(f"{sim_url}/") and "/dialog/oauth?" in url
    location = consent(url)
    assert location.startswith(f"{public}/v1/connect/meta/callback?")
    if mode == "listen":
        for _ in range(50):
            try:
                answer = httpx.get(location, timeout=10)
                break
            except httpx.TransportError:
                import time

                time.sleep(0.1)
        assert answer.status_code == 200 and "close this tab" in answer.text
        out, errors = proc.communicate(timeout=60)
    elif mode == "paste":
        out, errors = proc.communicate(location + "\n", timeout=60)
    else:  # what a user copies off a page that shows only the code
        code = parse_qs(urlsplit(location).query)["code"][0]
        out, errors = proc.communicate(code + "\n", timeout=60)
    assert proc.returncode == 0, errors
    got = json.loads(out)
    ids = sorted(c["external_account_id"] for c in got["connections"])
    assert ids == (["3001", "3002", "3003"] if mode == "listen" else ["3001", "3003"])
    assert "sim-user-" not in out + errors and SIM_APP_SECRET not in out + errors


async def test_reconnect_through_the_flow_fixes_every_account_of_the_grant(
    api: httpx.AsyncClient, run_worker: Any
) -> None:
    ws, headers = await tenant(api)
    landed = await api.get(
        callback_path(consent(await start(api, ws, headers))), headers={"Accept": "application/json"}
    )
    picked = await api.post(
        f"/v1/workspaces/{ws}/connect/meta/accounts",
        params={"session": landed.json()["session_id"]},
        json={"accounts": ["3001", "3002"], "backfill": False},
        headers=headers,
    )
    ids = sorted(c["id"] for c in picked.json()["connections"])
    async with session_scope() as session:
        await session.execute(
            text("UPDATE connections SET sync_status = 'reconnect_required' WHERE workspace_id = :w"),
            {"w": ws},
        )
        before = (await session.execute(text("SELECT DISTINCT grant_id FROM credentials"))).all()
        # a third account on the same login, which the next login no longer reaches
        unreached = (
            await create_connection(
                session,
                uuid.UUID(ws),
                "meta",
                "act_9999",
                Credentials(access_token="old-login"),
                grant_id=(
                    await session.execute(
                        text("SELECT grant_id FROM credentials WHERE connection_id = :c"), {"c": ids[0]}
                    )
                ).scalar(),
            )
        ).id

    started = await api.post(f"/v1/workspaces/{ws}/connect/meta", json={"reconnect": ids[0]}, headers=headers)
    assert started.status_code == 201, started.text
    again = await api.get(
        callback_path(consent(started.json()["authorization_url"])), headers={"Accept": "application/json"}
    )
    assert again.status_code == 200, again.text
    assert sorted(again.json()["reconnected"]) == ids
    assert again.json()["not_reconnected"] == [str(unreached)]  # said, not silently left behind
    async with session_scope() as session:
        await session.execute(text("DELETE FROM connections WHERE id = :c"), {"c": unreached})
    listed = (await api.get(f"/v1/workspaces/{ws}/connections", headers=headers)).json()["items"]
    assert sorted(c["id"] for c in listed) == ids  # same connections, no new ones
    # out of reconnect_required, each with its catch-up sync queued (no worker runs here)
    assert {c["sync_status"] for c in listed} == {"queued"}
    await run_worker()  # the catch-ups run with the new token
    listed = (await api.get(f"/v1/workspaces/{ws}/connections", headers=headers)).json()["items"]
    assert {c["sync_status"] for c in listed} == {"idle"}
    async with session_scope() as session:
        grants = (
            await session.execute(
                text(
                    "SELECT DISTINCT k.grant_id FROM credentials k "
                    "JOIN connections c ON c.id = k.connection_id WHERE c.workspace_id = :w"
                ),
                {"w": ws},
            )
        ).all()
    assert len(grants) == 1 and grants[0] not in before

    # another workspace cannot start a reconnect of these connections
    other_ws, other_headers = await tenant(api)
    stolen = await api.post(
        f"/v1/workspaces/{other_ws}/connect/meta", json={"reconnect": ids[0]}, headers=other_headers
    )
    assert stolen.status_code == 404


async def test_account_ids_are_stored_in_one_form_per_provider(meta_sim: Any) -> None:
    from core.testing.harness import create_workspace

    async with session_scope() as session:
        ws = await create_workspace(session, "ids")
        creds = Credentials(access_token="t", refresh_token="r")
        meta = await create_connection(session, ws.id, "meta", " act_777 ", creds)
        google = await create_connection(session, ws.id, "google", "100-000-0003", creds)
        shop = await create_connection(session, ws.id, "shopify", "My-Store.MyShopify.com", creds)
    assert (meta.external_account_id, google.external_account_id) == ("777", "1000000003")
    assert shop.external_account_id == "my-store.myshopify.com"


async def test_an_expired_sign_in_link_is_refused(api: httpx.AsyncClient) -> None:
    ws, headers = await tenant(api)
    location = consent(await start(api, ws, headers))
    async with session_scope() as session:
        await session.execute(
            text(
                "UPDATE connect_sessions SET expires_at = now() - interval '1 second' WHERE workspace_id = :w"
            ),
            {"w": ws},
        )
    answer = await api.get(callback_path(location), headers={"Accept": "application/json"})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "state_expired"
    async with session_scope() as session:
        row = (
            await session.execute(
                text("SELECT status, access_token_enc FROM connect_sessions WHERE workspace_id = :w"),
                {"w": ws},
            )
        ).one()
    assert row.status == "failed" and row.access_token_enc is None


async def test_the_dashboard_picks_only_its_own_workspaces_accounts(meta_sim: Any) -> None:
    """The dashboard's pick page and form (core/web/connect.py): another workspace's signed-in
    browser cannot see or use a connect session; the owner's ticks become connections."""
    import re

    csrf = re.compile(r'name="csrf" value="([^"]+)"')
    app = create_api()
    owner = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC)
    intruder = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC)
    async with owner, intruder:
        ws_a, headers_a = await tenant(owner)
        _, headers_b = await tenant(owner)
        for client, headers in ((owner, headers_a), (intruder, headers_b)):
            form = await client.get("/login")
            token = csrf.search(form.text)
            assert token is not None
            key = headers["Authorization"].removeprefix("Bearer ")
            signed = await client.post("/login", data={"csrf": token.group(1), "api_key": key})
            assert signed.status_code == 303
        dashboard = await owner.get("/dashboard")
        mine = csrf.search(dashboard.text)
        assert mine is not None and 'id="connect-meta"' in dashboard.text
        started = await owner.post("/dashboard/connect/meta", data={"csrf": mine.group(1)})
        link = re.search(r'id="continue" href="([^"]+)"', started.text)
        assert started.status_code == 200 and link is not None
        import html

        landed = await owner.get(callback_path(consent(html.unescape(link.group(1)))))
        session_id = re.search(r'id="session-id">([^<]+)<', landed.text)
        assert session_id is not None
        pick_url = f"/dashboard/connect/meta/accounts?session={session_id.group(1)}"
        assert f'href="{pick_url}"' in landed.text

        stolen = await intruder.get(pick_url)
        assert stolen.status_code == 404 and "3001" not in stolen.text
        theirs = csrf.search((await intruder.get("/dashboard")).text)
        assert theirs is not None
        forced = await intruder.post(pick_url, data={"csrf": theirs.group(1), "account": "3001"})
        assert forced.status_code == 404 and "3001" not in forced.text

        listed = await owner.get(pick_url)
        assert listed.status_code == 200 and 'value="3001"' in listed.text
        picked = await owner.post(
            pick_url, content=urlencode([("csrf", mine.group(1)), ("account", "3001"), ("account", "3003")]),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        assert picked.status_code == 303 and picked.headers["location"] == "/dashboard"
        connections = (await owner.get(f"/v1/workspaces/{ws_a}/connections", headers=headers_a)).json()[
            "items"
        ]
        assert sorted(c["external_account_id"] for c in connections) == ["3001", "3003"]
    await app.state.resources.aclose()


async def test_a_flow_never_picked_loses_its_tokens(api: httpx.AsyncClient) -> None:
    ws, headers = await tenant(api)
    await api.get(callback_path(consent(await start(api, ws, headers))))
    kept = await api.get(
        callback_path(consent(await start(api, ws, headers))), headers={"Accept": "application/json"}
    )
    kept_id = kept.json()["session_id"]
    async with session_scope() as session:
        await session.execute(
            text(
                "UPDATE connect_sessions SET expires_at = now() - interval '1 second' "
                "WHERE workspace_id = :w AND id <> :k"
            ),
            {"w": ws, "k": kept_id},
        )
    await start(api, ws, headers)  # any new flow forgets the tokens of the lapsed ones
    async with session_scope() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT id, access_token_enc IS NOT NULL AS has FROM connect_sessions "
                    "WHERE workspace_id = :w"
                ),
                {"w": ws},
            )
        ).all()
    assert {str(r.id) for r in rows if r.has} == {kept_id}
    listed = await api.get(
        f"/v1/workspaces/{ws}/connect/meta/accounts", params={"session": kept_id}, headers=headers
    )
    assert listed.status_code == 200 and len(listed.json()["accounts"]) == 3
