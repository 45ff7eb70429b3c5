"""Meta's app-wide throttle (code 4) through the real worker and fan-out: every connection of the
app waits, in the worker and in the next fan-out; connections of another app keep syncing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from metricx_meta import MetaProvider, MetaSettings
from metricx_meta.errors import GraphError, map_graph_error
from metricx_meta.simulator import DEFAULT_TOKEN, SimState, create_app, seed_account
from sqlalchemy import text

from core import AccountRef, Credentials, RateLimited, SyncMode
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

APP_A, APP_B = "1111111111", "2222222222"
TOKEN_B = "EAAB-token-of-app-b"


def accounts(today: Any) -> list[Any]:
    return [
        seed_account(n, campaigns=1, adsets_per_campaign=1, ads_per_adset=2, seed=int(n), today=today)
        for n in ("3001", "3002", "3003")
    ]


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
def meta_sim(metricx_env: Any) -> Iterator[tuple[SimState, str]]:
    state = SimState(accounts, now=datetime.now(UTC))
    state.tokens[TOKEN_B] = "valid"
    with serve_app(create_app(state)) as url:
        env = {
            "METRICX_META_BASE_URL": url,
            "METRICX_META_MAX_RETRIES": "0",
            # A long throttle: the deferred syncs stay deferred while the test looks at them.
            "METRICX_META_THROTTLE_DEFAULT_RETRY_S": "900",
        }
        with plugin_environment(env, redis_url=metricx_env.redis_url):
            yield state, url


def app(app_id: str) -> Any:
    """The Meta settings of a deployment whose tokens belong to ``app_id`` (operator config)."""
    return plugin_environment({"METRICX_META_APP_ID": app_id})


async def connect(account: str, token: str = DEFAULT_TOKEN) -> tuple[uuid.UUID, uuid.UUID]:
    async with session_scope() as session:
        ws = await create_workspace(session, f"meta-scope-{account}-{uuid.uuid4().hex[:4]}")
        conn = await create_connection(session, ws.id, "meta", f"act_{account}", Credentials(token))
    return ws.id, conn.id


async def row(connection_id: uuid.UUID) -> Any:
    async with session_scope() as session:
        result = await session.execute(text("SELECT * FROM connections WHERE id = :c"), {"c": connection_id})
        return result.one()


async def sync(conn: tuple[uuid.UUID, uuid.UUID], run_worker: Any, redis: Any) -> Any:
    await enqueue_sync_job(str(conn[1]), str(conn[0]), redis=redis)
    await run_worker(max_burst_jobs=1)
    return await row(conn[1])


def calls_to(state: SimState, account: str) -> int:
    return len(state.calls.get(account, ()))


@pytest.mark.parametrize(
    "throttle",
    [{"scope": "app"}, {"code": 4, "subcode": 1504022}],  # (#4) app limit; 4/1504022 the app's insights quota
    ids=["4", "4-1504022"],
)
async def test_app_throttle_defers_the_apps_connections_not_another_apps(
    meta_sim: Any, alone: None, run_worker: Any, redis_client: Any, throttle: dict[str, Any]
) -> None:
    state, url = meta_sim
    a1, a2, b1 = await connect("3001"), await connect("3002"), await connect("3003", TOKEN_B)
    with app(APP_A):
        assert (await sync(a1, run_worker, redis_client)).sync_status == "idle"
        assert (await sync(a2, run_worker, redis_client)).sync_status == "idle"
    with app(APP_B):
        assert (await sync(b1, run_worker, redis_client)).sync_status == "idle"

    # Meta answers code 4 (application request limit) to one call of a1's next sync.
    httpx.post(
        f"{url}/_sim/faults", json={"kind": "throttle", **throttle, "count": 1, "account": "3001"}
    ).raise_for_status()
    with app(APP_A):
        first = await sync(a1, run_worker, redis_client)
    assert first.sync_status == "rate_limited" and first.last_error_kind == "rate_limited"
    assert first.rate_limited_until > datetime.now(UTC) + timedelta(minutes=4)  # regain: 5 minutes
    # In the worker: a2 shares the app, so it is deferred at once, with the same deadline...
    second = await row(a2[1])
    assert second.sync_status == "rate_limited"
    assert second.rate_limited_until == first.rate_limited_until
    assert "app" in second.last_sync_error
    # ...and its own sync waits without calling Meta.
    before = calls_to(state, "3002")
    with app(APP_A):
        second = await sync(a2, run_worker, redis_client)
    assert second.sync_status == "rate_limited" and calls_to(state, "3002") == before
    # b1 belongs to another app: untouched, and it keeps syncing.
    other = await row(b1[1])
    assert other.sync_status == "idle" and other.rate_limited_until is None
    with app(APP_B):
        other = await sync(b1, run_worker, redis_client)
    assert other.sync_status == "idle" and other.total_syncs_succeeded == 2

    # The next fan-out skips the app's connections (even one whose row lost its mark: the block in
    # Redis is what counts) and enqueues the other app's.
    async with session_scope() as session:
        await session.execute(
            text("UPDATE connections SET sync_status = 'idle', rate_limited_until = NULL WHERE id = :c"),
            {"c": a2[1]},
        )
    tick = "2031-01-01T10:15:00+00:00"
    ctx = {"settings": get_settings(), "registry": get_registry(), "redis": redis_client}
    stats = await fan_out(ctx, SyncMode.realtime, tick)
    assert (stats["enqueued"], stats["skipped"]) == (1, {"rate_limited": 2})
    queued = {m.decode() for m in await redis_client.zrange(get_settings().queue_name, 0, -1)}
    assert f"sync:{b1[1]}:realtime:203101011015" in queued
    # (a1 and a2 hold only the re-queued syncs their deferral scheduled for when the throttle ends)
    assert not {f"sync:{a[1]}:realtime:203101011015" for a in (a1, a2)} & queued
    again = await row(a2[1])
    assert again.sync_status == "rate_limited" and again.rate_limited_until > datetime.now(UTC)


@pytest.mark.parametrize(
    ("code", "scope"), [(4, "app"), (17, "token"), (32, "account"), (613, "account"), (80000, "account")]
)
def test_throttle_codes_name_who_they_hold_back(code: int, scope: str) -> None:
    error = GraphError(code=code, subcode=None, message="throttled", type="OAuthException", fbtrace_id=None)
    mapped = map_graph_error(400, error, retry_after_s=None, default_retry_s=60)
    assert isinstance(mapped, RateLimited) and mapped.scope == scope


def test_the_app_comes_from_the_operators_settings_never_the_connection() -> None:
    account = AccountRef("c", "w", "act_42", config={"app_id": "tenant-chosen"})
    scopes = MetaProvider(MetaSettings(app_id="operator-app")).throttle_scopes(account, Credentials("t"))
    assert dict(scopes) == {"account": "42", "app": "operator-app"}
    assert "app" not in MetaProvider(MetaSettings()).throttle_scopes(account, Credentials("t"))
