"""Issue 19 item 3 with Meta: a tenant whose own token is throttled cannot block another tenant's
account by connecting to its account id (through the API or the worker); real PostgreSQL, Redis,
HTTP and worker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from metricx_meta.simulator import DEFAULT_TOKEN, SimState, create_app, seed_account
from sqlalchemy import text

from core import Credentials
from core.testing.harness import (
    Connection,
    account_ref,
    create_connection,
    create_workspace,
    enqueue_sync_job,
    get_registry,
    session_scope,
    sync_limiter,
)
from core.testing.http import serve_app
from core.testing.plugin import plugin_environment

VICTIM = "4001"
ATTACKER_TOKEN = "EAAB-attacker-own-token"
ATTACKER_OTHER_TOKEN = "EAAB-attacker-other-token"  # not blocked yet: its sync reaches Meta
OPERATOR = {"Authorization": "Bearer test-operator-key"}


@pytest.fixture
async def api(metricx_env: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The real app over ASGI, against the session's PostgreSQL and Redis."""
    from core.testing.harness import create_api

    app = create_api()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield client
    await app.state.resources.aclose()


async def new_tenant(api: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    """A workspace and an API key for it: (workspace id, auth headers)."""
    ws = await api.post("/v1/workspaces", json={"name": f"t-{uuid.uuid4().hex[:6]}"}, headers=OPERATOR)
    key = await api.post(f"/v1/workspaces/{ws.json()['id']}/api-keys", json={"name": "t"}, headers=OPERATOR)
    assert key.status_code == 201, key.text
    return ws.json()["id"], {"Authorization": f"Bearer {key.json()['key']}"}


async def connect_via_api(api: httpx.AsyncClient, tenant: tuple[str, dict[str, str]], token: str) -> Any:
    return await api.post(
        f"/v1/workspaces/{tenant[0]}/connections",
        json={
            "provider": "meta",
            "external_account_id": f"act_{VICTIM}",
            "credentials": {"access_token": token},
            "backfill": False,
        },
        headers=tenant[1],
    )


@pytest.fixture
def meta_sim(metricx_env: Any) -> Iterator[tuple[SimState, str]]:
    def accounts(today: Any) -> list[Any]:
        return [seed_account(VICTIM, campaigns=1, adsets_per_campaign=1, ads_per_adset=2, today=today)]

    state = SimState(accounts, now=datetime.now(UTC))
    state.tokens[ATTACKER_TOKEN] = state.tokens[ATTACKER_OTHER_TOKEN] = "valid"
    with serve_app(create_app(state)) as url:
        env = {"METRICX_META_BASE_URL": url, "METRICX_META_MAX_RETRIES": "0"}
        with plugin_environment(env, redis_url=metricx_env.redis_url):
            yield state, url


def throttle_next_call_to_victim(url: str, scope: str) -> None:
    """Meta throttles the next call touching the victim's account (10 minutes to regain access):
    scope ``token`` is Meta's code 17 (user request limit), ``account`` code 80000 (business use case)."""
    fault = {"kind": "throttle", "scope": scope, "count": 1, "account": VICTIM, "retry_after_s": 600}
    httpx.post(f"{url}/_sim/faults", json=fault).raise_for_status()


async def connection(connection_id: uuid.UUID) -> Any:
    async with session_scope() as session:
        result = await session.execute(text("SELECT * FROM connections WHERE id = :c"), {"c": connection_id})
        return result.one()


async def victim_blocked_for(connection_id: uuid.UUID, redis: Any) -> float:
    """How long the victim's own limiter (its verified scopes) would make it wait now."""
    async with session_scope() as session:
        conn = await session.get(Connection, connection_id)
    assert conn is not None
    provider = get_registry().provider("meta")
    limiter = sync_limiter(
        redis, provider, account_ref(conn), Credentials(DEFAULT_TOKEN), stored=conn.throttle_scopes
    )
    assert limiter.scopes.account_verified  # the victim's sync verified its own account
    return await limiter.blocked_for()


async def test_a_throttled_tenant_cannot_block_another_tenants_account(
    meta_sim: Any, api: httpx.AsyncClient, run_worker: Any, redis_client: Any
) -> None:
    _, url = meta_sim
    victim, attacker = await new_tenant(api), await new_tenant(api)
    created = await connect_via_api(api, victim, DEFAULT_TOKEN)
    assert created.status_code == 201, created.text
    victim_id = uuid.UUID(created.json()["id"])
    await enqueue_sync_job(str(victim_id), victim[0], redis=redis_client)
    await run_worker(max_burst_jobs=1)
    assert (await connection(victim_id)).sync_status == "idle"
    assert await victim_blocked_for(victim_id, redis_client) == 0

    # Through the API: the attacker connects to the victim's account id with its own token, which
    # Meta throttles (code 17, user request limit). Its request is refused; the victim is not blocked.
    throttle_next_call_to_victim(url, "token")
    refused = await connect_via_api(api, attacker, ATTACKER_TOKEN)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "provider_rate_limited"
    assert await victim_blocked_for(victim_id, redis_client) == 0

    # Through the worker: the attacker's connection to the victim's account id meets an account-level
    # throttle (80000) before Meta ever showed its token reaches that account: its own token waits.
    async with session_scope() as session:
        ws = await create_workspace(session, "attacker-direct")
        sneaky = await create_connection(
            session, ws.id, "meta", f"act_{VICTIM}", Credentials(ATTACKER_OTHER_TOKEN)
        )
    throttle_next_call_to_victim(url, "account")
    await enqueue_sync_job(str(sneaky.id), str(ws.id), redis=redis_client)
    await run_worker(max_burst_jobs=1)
    sneaky_row = await connection(sneaky.id)
    assert sneaky_row.sync_status == "rate_limited" and "80000" in sneaky_row.last_sync_error
    assert await victim_blocked_for(victim_id, redis_client) == 0
    row = await connection(victim_id)
    assert row.sync_status == "idle" and row.rate_limited_until is None

    # The victim's next sync runs at once.
    await enqueue_sync_job(str(victim_id), victim[0], redis=redis_client)
    await run_worker(max_burst_jobs=1)
    row = await connection(victim_id)
    assert row.sync_status == "idle" and row.total_syncs_succeeded == 2, row.last_sync_error


async def test_a_verified_account_throttle_defers_that_account(
    meta_sim: Any, run_worker: Any, redis_client: Any
) -> None:
    """The other side of the rule: once a sync showed the token reaches the account, an account-level
    throttle (80000) blocks the account itself, for every worker."""
    _, url = meta_sim
    async with session_scope() as session:
        ws = await create_workspace(session, "verified")
        conn = await create_connection(session, ws.id, "meta", f"act_{VICTIM}", Credentials(DEFAULT_TOKEN))
    await enqueue_sync_job(str(conn.id), str(ws.id), redis=redis_client)
    await run_worker(max_burst_jobs=1)
    assert (await connection(conn.id)).sync_status == "idle"
    throttle_next_call_to_victim(url, "account")
    await enqueue_sync_job(str(conn.id), str(ws.id), redis=redis_client)
    await run_worker(max_burst_jobs=1)
    assert (await connection(conn.id)).sync_status == "rate_limited"
    assert 9 * 60 < await victim_blocked_for(conn.id, redis_client) <= 10 * 60
