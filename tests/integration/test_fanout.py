"""The realtime / attribution fan-out against real PostgreSQL and Redis, at 10,000 connections."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from core.config import get_settings
from core.crypto import encrypt
from core.db.engine import session_scope
from core.fanout import fan_out
from core.jobs import scheduled_attribution_sync
from core.plugins import get_registry
from core.providers import SyncMode
from tests.conftest import fetch_all, fetch_one

TICK = "2030-01-01T10:15:00+00:00"
SLOT = "203001011015"

INSERT = text(
    """
    WITH new AS (
        INSERT INTO connections (id, workspace_id, provider, external_account_id, timezone, config,
                                 status, sync_status, rate_limited_until, last_sync_attempted_at,
                                 total_syncs_attempted, total_syncs_succeeded)
        SELECT gen_random_uuid(), :ws, 'testprovider', :prefix || g, 'UTC', '{}'::jsonb,
               :status, :sync_status, :rate_limited_until, :attempted_at, 0, 0
        FROM generate_series(1, :n) AS g
        RETURNING id
    )
    INSERT INTO credentials (id, connection_id, access_token_enc, updated_at)
    SELECT gen_random_uuid(), id, :token, now() FROM new
    """
)


async def insert_connections(
    n: int,
    *,
    status: str = "active",
    sync_status: str = "idle",
    rate_limited_until: datetime | None = None,
    attempted_at: datetime | None = None,
    token: str | None = "tp-valid-token",
) -> uuid.UUID:
    """``n`` connections of one new workspace in two set-based statements; returns the workspace."""
    ws = uuid.uuid4()
    async with session_scope() as session:
        await session.execute(
            text("INSERT INTO workspaces (id, name) VALUES (:ws, :name)"), {"ws": ws, "name": f"bulk-{ws}"}
        )
        await session.execute(
            INSERT,
            {
                "ws": ws,
                "prefix": f"acct-{ws.hex[:6]}-",
                "n": n,
                "status": status,
                "sync_status": sync_status,
                "rate_limited_until": rate_limited_until,
                "attempted_at": attempted_at,
                "token": encrypt(token),
            },
        )
    return ws


@pytest.fixture
async def clean(metricx_env: Any, redis_client: Any) -> Any:
    """No connections and an empty queue before and after (the fan-out scans every connection)."""

    async def wipe() -> None:
        async with session_scope() as session:
            await session.execute(text("TRUNCATE connections, metric_snapshots CASCADE"))
        for pattern in ("arq:job:*", "metricx:fanout:*", "metricx:sync:active:*"):
            keys = [k async for k in redis_client.scan_iter(pattern, count=5000)]
            for start in range(0, len(keys), 5000):
                await redis_client.delete(*keys[start : start + 5000])
        await redis_client.delete(get_settings().queue_name)

    await wipe()
    yield
    await wipe()


def ctx_for(redis_client: Any, **overrides: Any) -> dict[str, Any]:
    settings = get_settings().model_copy(update=overrides)
    return {"settings": settings, "registry": get_registry(), "redis": redis_client}


async def queued_jobs(redis_client: Any) -> list[str]:
    return [m.decode() for m in await redis_client.zrange(get_settings().queue_name, 0, -1)]


async def test_ten_thousand_connections_one_job_each_even_when_run_twice(
    clean: Any, redis_client: Any
) -> None:
    now = datetime.now(UTC)
    due_ws = await insert_connections(10_000)
    await insert_connections(30, status="paused")
    await insert_connections(20, sync_status="rate_limited", rate_limited_until=now + timedelta(hours=5))
    lifted_ws = await insert_connections(
        1, sync_status="rate_limited", rate_limited_until=now - timedelta(minutes=1)
    )
    await insert_connections(10, sync_status="reconnect_required")
    # A sync that started a minute ago is alive; one stuck for hours with no job is repaired.
    await insert_connections(5, sync_status="syncing", attempted_at=now - timedelta(minutes=1))
    no_token_ws = await insert_connections(7, token=None)

    stats = await fan_out(ctx_for(redis_client), SyncMode.realtime, TICK)

    assert stats["enqueued"] == 10_001
    assert stats["skipped"] == {
        "busy": 5,
        "invalid_token": 7,
        "paused": 30,
        "rate_limited": 20,
        "reconnect_required": 10,
    }
    assert stats["failed"] == 0
    jobs = await queued_jobs(redis_client)
    assert len(jobs) == len(set(jobs)) == 10_001
    assert all(j.startswith("sync:") and j.endswith(f":realtime:{SLOT}") for j in jobs)
    queued = await fetch_one(
        "SELECT count(*) AS n, count(DISTINCT current_job_id) AS jobs FROM connections "
        "WHERE workspace_id IN (:a, :b) AND sync_status = 'queued'",
        a=due_ws,
        b=lifted_ws,
    )
    assert (queued.n, queued.jobs) == (10_001, 10_001)
    bad = await fetch_all(
        "SELECT sync_status, last_sync_error FROM connections WHERE workspace_id = :w", w=no_token_ws
    )
    assert {(r.sync_status, r.last_sync_error) for r in bad} == {
        ("reconnect_required", "No token configured. Please reconnect.")
    }

    # Same slot again (a duplicate tick, a retried fan-out): nothing new.
    again = await fan_out(ctx_for(redis_client), SyncMode.realtime, TICK)
    assert again["enqueued"] == 0
    assert again["skipped"]["already_enqueued"] == 10_001
    assert len(await queued_jobs(redis_client)) == 10_001


async def test_a_token_removed_after_a_passed_check_is_caught_on_the_next_cycle(
    clean: Any, redis_client: Any
) -> None:
    ws = await insert_connections(3)
    first = await fan_out(ctx_for(redis_client), SyncMode.realtime, TICK)
    assert first["enqueued"] == 3
    # The tokens are removed (a disconnect that left the connection active): the stored row changed,
    # so the check runs again even though it passed a cycle ago.
    async with session_scope() as session:
        await session.execute(
            text(
                "UPDATE credentials SET access_token_enc = NULL WHERE connection_id IN "
                "(SELECT id FROM connections WHERE workspace_id = :w)"
            ),
            {"w": ws},
        )
        await session.execute(
            text("UPDATE connections SET sync_status = 'idle' WHERE workspace_id = :w"), {"w": ws}
        )
    later = await fan_out(ctx_for(redis_client), SyncMode.realtime, "2030-01-01T10:30:00+00:00")
    assert later["enqueued"] == 0 and later["skipped"] == {"invalid_token": 3}


async def test_a_pass_leaves_the_garbage_collector_on_even_when_it_fails(
    clean: Any, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass runs with the cyclic collector off; a worker left without it would grow forever."""
    import gc

    import core.fanout

    await insert_connections(3)
    assert gc.isenabled()
    await fan_out(ctx_for(redis_client), SyncMode.realtime, TICK)
    assert gc.isenabled()

    async def lost(after: Any) -> Any:
        assert not gc.isenabled()  # off while the pass pages
        raise ConnectionError("PostgreSQL went away")

    monkeypatch.setattr(core.fanout, "_page", lost)
    with pytest.raises(ConnectionError):
        await fan_out(ctx_for(redis_client), SyncMode.realtime, "2030-01-01T10:30:00+00:00")
    assert gc.isenabled()


async def test_spread_defers_starts_across_the_interval(clean: Any, redis_client: Any) -> None:
    await insert_connections(500)
    before_ms = datetime.now(UTC).timestamp() * 1000
    stats = await fan_out(ctx_for(redis_client, fanout_spread_s=600.0), SyncMode.realtime, TICK)
    assert stats["enqueued"] == 500
    scores = [s for _, s in await redis_client.zrange(get_settings().queue_name, 0, -1, withscores=True)]
    offsets_s = sorted((s - before_ms) / 1000 for s in scores)
    assert offsets_s[0] < 60 and 540 < offsets_s[-1] <= 600 + 5
    # roughly even: each tenth of the interval gets some starts
    assert len({int(o // 60) for o in offsets_s if o < 600}) == 10


async def test_attribution_comes_back_for_connections_busy_with_a_realtime_sync(
    clean: Any, redis_client: Any
) -> None:
    idle_ws = await insert_connections(3)
    busy_ws = await insert_connections(2, sync_status="queued", attempted_at=datetime.now(UTC))
    ctx = ctx_for(redis_client, fanout_retry_s=120.0)

    first = await scheduled_attribution_sync(ctx, tick=TICK)

    assert first["enqueued"] == 3 and first["skipped"] == {"busy": 2}
    follow_up = first["follow_up"]
    assert follow_up is not None
    jobs = await queued_jobs(redis_client)
    assert follow_up in jobs
    assert sum(j.endswith(f":attribution:{SLOT}") for j in jobs) == 3
    # The realtime syncs of the busy connections finish; the follow-up pass picks them up only.
    async with session_scope() as session:
        await session.execute(
            text("UPDATE connections SET sync_status = 'idle' WHERE workspace_id = :w"), {"w": busy_ws}
        )
    second = await scheduled_attribution_sync(ctx, tick=TICK)
    assert second["enqueued"] == 2
    assert second["skipped"] == {"already_enqueued": 3}
    assert second["follow_up"] is None
    jobs = await queued_jobs(redis_client)
    assert sum(j.endswith(f":attribution:{SLOT}") for j in jobs) == 5
    rows = await fetch_all(
        "SELECT current_job_id FROM connections WHERE workspace_id IN (:a, :b)", a=idle_ws, b=busy_ws
    )
    assert all(r.current_job_id.endswith(f":attribution:{SLOT}") for r in rows)


async def test_scheduled_realtime_sync_through_a_worker_syncs_every_due_connection(
    clean: Any, make_connection: Any, run_worker: Any, redis_client: Any
) -> None:
    """The cron job as the scheduler enqueues it: the worker fans out, then runs each sync."""
    from arq.connections import ArqRedis

    from core.redis import deserialize, serialize

    conns = [(await make_connection())[1] for _ in range(3)]
    paused = (await make_connection())[1]
    async with session_scope() as session:
        await session.execute(text("UPDATE connections SET status = 'paused' WHERE id = :c"), {"c": paused})
    pool = ArqRedis(
        connection_pool=redis_client.connection_pool,
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=get_settings().queue_name,
    )
    tick = datetime.now(UTC).replace(second=0, microsecond=0).isoformat()
    await pool.enqueue_job("scheduled_realtime_sync", tick=tick, _job_id=f"cron:realtime_sync:{tick}")
    await run_worker()
    rows = await fetch_all(
        "SELECT id, sync_status, total_syncs_succeeded FROM connections WHERE id IN (:a, :b, :c, :d)",
        a=conns[0],
        b=conns[1],
        c=conns[2],
        d=paused,
    )
    by_id = {r.id: r for r in rows}
    assert all(by_id[c].sync_status == "idle" and by_id[c].total_syncs_succeeded == 1 for c in conns)
    assert by_id[paused].total_syncs_succeeded == 0
