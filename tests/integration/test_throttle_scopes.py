"""Throttle scopes across tenants and in the fan-out, against real PostgreSQL, Redis and HTTP.

Issue 19 item 3: a tenant whose own token is throttled cannot block another
tenant's account by connecting to its account id (through the API or the worker).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from metricx_meta.simulator import DEFAULT_TOKEN, SimState, create_app, seed_account
from sqlalchemy import text

from core.db.engine import session_scope
from core.db.models import Connection
from core.enqueue import enqueue_sync_job
from core.fanout import fan_out
from core.plugins import get_registry
from core.providers import Credentials, SyncMode
from core.ratelimit import block_key
from core.services import create_connection, create_workspace
from core.sync import status
from core.sync.fetch import account_ref
from core.sync.throttle import sync_limiter
from core.testing.http import serve_app
from core.testing.plugin import plugin_environment
from tests.conftest import fetch_all
from tests.integration.test_api_support import api, new_tenant
from tests.integration.test_fanout import clean, ctx_for, insert_connections

__all__ = ["api", "clean"]  # fixtures

VICTIM = "4001"
ATTACKER_TOKEN = "EAAB-attacker-own-token"
ATTACKER_OTHER_TOKEN = "EAAB-attacker-other-token"  # not blocked yet: its sync reaches Meta


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


def throttle_next_call_to_victim(url: str, code: int) -> None:
    """Meta throttles the next call touching the victim's account (10 minutes to regain access)."""
    fault = {"kind": "throttle", "code": code, "count": 1, "account": VICTIM, "regain_minutes": 10}
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
    created = await api.post(
        victim.url("/connections"),
        json={
            "provider": "meta",
            "external_account_id": f"act_{VICTIM}",
            "credentials": {"access_token": DEFAULT_TOKEN},
            "backfill": False,
        },
        headers=victim.headers,
    )
    assert created.status_code == 201, created.text
    victim_id = uuid.UUID(created.json()["id"])
    await enqueue_sync_job(str(victim_id), victim.workspace_id, redis=redis_client)
    await run_worker(max_burst_jobs=1)
    assert (await connection(victim_id)).sync_status == "idle"
    assert await victim_blocked_for(victim_id, redis_client) == 0

    # Through the API: the attacker connects to the victim's account id with its own token, which
    # Meta throttles (code 17, user request limit). Its request is refused; the victim is not blocked.
    throttle_next_call_to_victim(url, 17)
    refused = await api.post(
        attacker.url("/connections"),
        json={
            "provider": "meta",
            "external_account_id": f"act_{VICTIM}",
            "credentials": {"access_token": ATTACKER_TOKEN},
            "backfill": False,
        },
        headers=attacker.headers,
    )
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "provider_rate_limited"
    assert await victim_blocked_for(victim_id, redis_client) == 0

    # Through the worker: the attacker's connection to the victim's account id meets an account-level
    # throttle (80000) before Meta ever showed its token reaches that account: its own token waits.
    async with session_scope() as session:
        ws = await create_workspace(session, "attacker-direct")
        sneaky = await create_connection(
            session, ws.id, "meta", f"act_{VICTIM}", Credentials(ATTACKER_OTHER_TOKEN)
        )
    throttle_next_call_to_victim(url, 80000)
    await enqueue_sync_job(str(sneaky.id), str(ws.id), redis=redis_client)
    await run_worker(max_burst_jobs=1)
    sneaky_row = await connection(sneaky.id)
    assert sneaky_row.sync_status == "rate_limited" and "80000" in sneaky_row.last_sync_error
    assert await victim_blocked_for(victim_id, redis_client) == 0
    row = await connection(victim_id)
    assert row.sync_status == "idle" and row.rate_limited_until is None

    # The victim's next sync runs at once.
    await enqueue_sync_job(str(victim_id), victim.workspace_id, redis=redis_client)
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
    throttle_next_call_to_victim(url, 80000)
    await enqueue_sync_job(str(conn.id), str(ws.id), redis=redis_client)
    await run_worker(max_burst_jobs=1)
    assert (await connection(conn.id)).sync_status == "rate_limited"
    assert 9 * 60 < await victim_blocked_for(conn.id, redis_client) <= 10 * 60


async def set_scopes(workspace_id: uuid.UUID, keys: list[str]) -> list[uuid.UUID]:
    async with session_scope() as session:
        result = await session.execute(
            text("UPDATE connections SET throttle_scopes = :k WHERE workspace_id = :w RETURNING id"),
            {"k": keys, "w": workspace_id},
        )
        return list(result.scalars())


async def test_fan_out_skips_connections_whose_scope_is_blocked(clean: Any, redis_client: Any) -> None:
    app_a, app_b = "testprovider:app:aaaa", "testprovider:app:bbbb"
    shared = await insert_connections(3)
    await set_scopes(shared, [app_a, "testprovider:token:1"])
    other = await insert_connections(2)
    await set_scopes(other, [app_b, "testprovider:token:1"])
    await insert_connections(4)  # never synced: no scope keys stored
    until = await block_key(redis_client, app_a, 600)

    stats = await fan_out(ctx_for(redis_client), SyncMode.realtime, "2030-01-01T10:15:00+00:00")

    assert stats["enqueued"] == 6 and stats["skipped"] == {"rate_limited": 3}
    rows = await fetch_all(
        "SELECT sync_status, rate_limited_until, last_sync_error FROM connections WHERE workspace_id = :w",
        w=shared,
    )
    assert {r.sync_status for r in rows} == {"rate_limited"}
    assert {r.rate_limited_until for r in rows} == {datetime.fromtimestamp(until, UTC)}
    assert all("app" in r.last_sync_error for r in rows)
    # The next pass skips them by their row alone (no Redis look-up needed).
    stats = await fan_out(ctx_for(redis_client), SyncMode.realtime, "2030-01-01T10:30:00+00:00")
    assert stats["skipped"]["rate_limited"] == 3


async def test_marking_a_scope_keeps_what_users_must_see(clean: Any, redis_client: Any) -> None:
    """Running and queued syncs keep their status (their job meets the block); reconnect_required and
    error keep their message; paused connections are left alone; a longer deadline is never shortened."""
    key = "testprovider:developer:cccc"
    now = datetime.now(UTC)
    later = now + timedelta(hours=2)
    workspaces = {
        "idle": await insert_connections(1),
        "syncing": await insert_connections(1, sync_status="syncing"),
        "reconnect_required": await insert_connections(1, sync_status="reconnect_required"),
        "longer": await insert_connections(1, sync_status="rate_limited", rate_limited_until=later),
        "paused": await insert_connections(1, status="paused"),
    }
    for ws in workspaces.values():
        await set_scopes(ws, [key])
    async with session_scope() as session:
        marked = await status.mark_scope_rate_limited(
            session, key, until=now + timedelta(minutes=5), message="throttled"
        )
    assert len(marked) == 4
    got = {}
    for name, ws in workspaces.items():
        [row] = await fetch_all(
            "SELECT sync_status, rate_limited_until, last_sync_error FROM connections "
            "WHERE workspace_id = :w",
            w=ws,
        )
        got[name] = (row.sync_status, row.rate_limited_until, row.last_sync_error)
    five = now + timedelta(minutes=5)
    assert got["idle"] == ("rate_limited", five, "throttled")
    assert got["syncing"] == ("syncing", five, None)
    assert got["reconnect_required"] == ("reconnect_required", five, None)
    assert got["longer"][:2] == ("rate_limited", later)
    assert got["paused"] == ("idle", None, None)
