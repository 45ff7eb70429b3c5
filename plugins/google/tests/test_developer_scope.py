"""Google's developer-token quota through the real worker and fan-out: every connection of the
developer token waits, in the worker and in the next fan-out; another developer token's keep syncing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from metricx_google.provider import GoogleAdsProvider
from metricx_google.settings import GoogleSettings
from metricx_google.simulator import (
    CHILD_BERLIN_ID,
    CHILD_NY_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_REFRESH_TOKEN,
    MANAGER_ID,
    SimState,
    create_app,
)
from pydantic import SecretStr
from sqlalchemy import text

from core import AccountRef, Credentials, SyncMode
from core.testing.harness import (
    create_connection,
    create_workspace,
    enqueue_sync_job,
    fan_out,
    get_registry,
    get_settings,
    session_scope,
)
from core.testing.http import serve_app
from core.testing.plugin import plugin_environment


@pytest.fixture
async def alone(metricx_env: Any, redis_client: Any) -> AsyncIterator[None]:
    """No other connections and no queued jobs, before and after: the fan-out scans every connection."""

    async def wipe() -> None:
        async with session_scope() as session:
            await session.execute(text("TRUNCATE connections, metric_snapshots CASCADE"))
        for pattern in ("arq:job:*", "metricx:fanout:*", "metricx:sync:active:*"):
            keys = [k async for k in redis_client.scan_iter(pattern)]
            if keys:
                await redis_client.delete(*keys)
        await redis_client.delete(get_settings().queue_name)

    await wipe()
    yield
    await wipe()


@pytest.fixture
def google_sim(metricx_env: Any) -> Iterator[tuple[SimState, str]]:
    state = SimState(now=datetime.now(UTC))  # frozen: "today" stays the same day while the test runs
    with serve_app(create_app(state)) as url:
        env = {
            "METRICX_GOOGLE_BASE_URL": url,
            "METRICX_GOOGLE_TOKEN_URL": f"{url}/token",
            "METRICX_GOOGLE_CLIENT_ID": DEFAULT_CLIENT_ID,
            "METRICX_GOOGLE_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
        }
        with plugin_environment(env, redis_url=metricx_env.redis_url):
            yield state, url


def developer(token: str) -> Any:
    """The Google settings of a deployment using developer token ``token`` (operator config)."""
    return plugin_environment({"METRICX_GOOGLE_DEVELOPER_TOKEN": token})


async def connect(customer_id: str) -> tuple[uuid.UUID, uuid.UUID]:
    async with session_scope() as session:
        ws = await create_workspace(session, f"google-scope-{uuid.uuid4().hex[:6]}")
        conn = await create_connection(
            session,
            ws.id,
            "google",
            customer_id,
            Credentials(refresh_token=DEFAULT_REFRESH_TOKEN),
            config={"login_customer_id": MANAGER_ID},
        )
    return ws.id, conn.id


async def row(connection_id: uuid.UUID) -> Any:
    async with session_scope() as session:
        result = await session.execute(text("SELECT * FROM connections WHERE id = :c"), {"c": connection_id})
        return result.one()


async def sync(conn: tuple[uuid.UUID, uuid.UUID], run_worker: Any, redis: Any) -> Any:
    await enqueue_sync_job(str(conn[1]), str(conn[0]), redis=redis)
    await run_worker(max_burst_jobs=1)
    return await row(conn[1])


def api_calls(url: str) -> int:
    return int(httpx.get(f"{url}/_sim/stats").json()["api_calls"])


async def test_developer_quota_defers_the_tokens_connections_not_another_tokens(
    google_sim: Any, alone: None, run_worker: Any, redis_client: Any
) -> None:
    _, url = google_sim
    a1, a2, b1 = await connect(CHILD_NY_ID), await connect(CHILD_BERLIN_ID), await connect(CHILD_NY_ID)
    with developer("dev-token-a"):
        assert (await sync(a1, run_worker, redis_client)).sync_status == "idle"
        assert (await sync(a2, run_worker, redis_client)).sync_status == "idle"
    with developer("dev-token-b"):
        assert (await sync(b1, run_worker, redis_client)).sync_status == "idle"

    # Google answers RESOURCE_EXHAUSTED (the developer token's daily operations) to a1's next call.
    fault = {"kind": "throttle", "scope": "developer", "count": 1, "account": CHILD_NY_ID}
    httpx.post(f"{url}/_sim/faults", json=fault).raise_for_status()
    with developer("dev-token-a"):
        first = await sync(a1, run_worker, redis_client)
    assert first.sync_status == "rate_limited" and first.last_error_kind == "rate_limited"
    assert first.rate_limited_until > datetime.now(UTC) + timedelta(minutes=1)  # midnight Pacific
    # In the worker: a2 uses the same developer token (another account, another tenant): deferred...
    second = await row(a2[1])
    assert second.sync_status == "rate_limited"
    assert second.rate_limited_until == first.rate_limited_until
    assert "developer" in second.last_sync_error
    # ...and its own sync waits without calling Google.
    before = api_calls(url)
    with developer("dev-token-a"):
        second = await sync(a2, run_worker, redis_client)
    assert second.sync_status == "rate_limited" and api_calls(url) == before
    # b1 (same account as a1, same refresh token, other developer token): untouched and syncing.
    other = await row(b1[1])
    assert other.sync_status == "idle" and other.rate_limited_until is None
    with developer("dev-token-b"):
        other = await sync(b1, run_worker, redis_client)
    assert other.sync_status == "idle" and other.total_syncs_succeeded == 2

    # The next fan-out skips the developer token's connections (even one whose row lost its mark)
    # and enqueues the other's.
    async with session_scope() as session:
        await session.execute(
            text("UPDATE connections SET sync_status = 'idle', rate_limited_until = NULL WHERE id = :c"),
            {"c": a2[1]},
        )
    ctx = {"settings": get_settings(), "registry": get_registry(), "redis": redis_client}
    stats = await fan_out(ctx, SyncMode.realtime, "2031-01-02T10:15:00+00:00")
    assert (stats["enqueued"], stats["skipped"]) == (1, {"rate_limited": 2})
    queued = {m.decode() for m in await redis_client.zrange(get_settings().queue_name, 0, -1)}
    assert f"sync:{b1[1]}:realtime:203101021015" in queued
    assert not {f"sync:{a[1]}:realtime:203101021015" for a in (a1, a2)} & queued
    again = await row(a2[1])
    assert again.sync_status == "rate_limited" and again.rate_limited_until > datetime.now(UTC)


def test_the_developer_scope_comes_from_the_operators_settings() -> None:
    account = AccountRef("c", "w", "100-000-0002", config={"developer_token": "tenant-chosen"})
    with_token = GoogleAdsProvider(GoogleSettings(developer_token=SecretStr("dev-a"), client_id="cid"))
    assert dict(with_token.throttle_scopes(account, Credentials(refresh_token="r"))) == {
        "account": "1000000002",
        "developer": "dev-a",
    }
    # Without a developer token the quota is the OAuth client's cloud project.
    project = GoogleAdsProvider(GoogleSettings(client_id="cid"))
    assert project.throttle_scopes(account, Credentials(refresh_token="r"))["developer"] == "cid"
