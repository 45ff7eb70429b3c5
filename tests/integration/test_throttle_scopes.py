"""Throttle scopes in the fan-out and in SQL, against real PostgreSQL and Redis.

(The cross-tenant case of issue 19 item 3 runs with Meta in plugins/meta/tests/test_meta_tenant_throttle.py.)
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from core.db.engine import session_scope
from core.fanout import fan_out
from core.providers import SyncMode
from core.ratelimit import block_key
from core.sync import status
from tests.conftest import fetch_all
from tests.integration.test_fanout import clean, ctx_for, insert_connections

__all__ = ["clean"]  # fixtures


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


async def test_fan_out_leaves_short_blocks_to_the_workers_limiter(clean: Any, redis_client: Any) -> None:
    shared = await insert_connections(2)
    await set_scopes(shared, ["testprovider:token:short"])
    await block_key(redis_client, "testprovider:token:short", 5)  # the limiter sleeps this out
    stats = await fan_out(ctx_for(redis_client), SyncMode.realtime, "2030-01-01T10:15:00+00:00")
    assert stats["enqueued"] == 2 and stats["skipped"] == {}
