"""Claim, then enqueue: a connection is ``queued`` for its job before the job exists, on every path."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from core.state import SyncJobId
from tests.conftest import fetch_one
from tests.integration.test_api_support import api, connect, tenant

__all__ = ["api", "tenant"]  # fixtures

CONN = "SELECT sync_status, current_job_id FROM connections WHERE id = :c"


@pytest.fixture
def enqueue_spy(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Records, at the moment each sync job is handed to Redis, what its connection shows."""
    import core.sync.requests as requests_module

    real = requests_module.enqueue_many
    seen: list[dict[str, Any]] = []

    async def observed(redis: Any, jobs: Any, **kwargs: Any) -> Any:
        for job in jobs:
            row = await fetch_one(CONN, c=job.connection_id)
            seen.append(
                {
                    "job_id": job.job_id,
                    "sync_status": row.sync_status,
                    "current_job_id": row.current_job_id,
                    "job_exists": bool(await redis.exists(f"arq:job:{job.job_id}")),
                }
            )
        return await real(redis, jobs, **kwargs)

    monkeypatch.setattr(requests_module, "enqueue_many", observed)
    return seen


async def test_api_sync_claims_the_connection_before_enqueueing(
    api: httpx.AsyncClient, tenant: Any, sim: Any, enqueue_spy: list[dict[str, Any]]
) -> None:
    conn = await connect(api, tenant, sim.url)
    url = tenant.url(f"/connections/{conn['id']}/sync")
    first = (await api.post(url, json={"mode": "attribution"}, headers=tenant.headers)).json()
    assert first["status"] == "enqueued"
    job_id = first["job_id"]
    assert enqueue_spy == [
        {"job_id": job_id, "sync_status": "queued", "current_job_id": job_id, "job_exists": False}
    ]
    assert SyncJobId.parse(job_id) == SyncJobId(conn["id"], "attribution", SyncJobId.parse(job_id).slot)  # type: ignore[union-attr]

    # A duplicate answers with the queued job and touches neither Redis nor the claim.
    again = (await api.post(url, json={"mode": "realtime"}, headers=tenant.headers)).json()
    assert (
        again["status"] == "already_queued" and again["job_id"] == job_id and again["mode"] == "attribution"
    )
    assert len(enqueue_spy) == 1
    row = await fetch_one(CONN, c=conn["id"])
    assert (row.sync_status, row.current_job_id) == ("queued", job_id)


async def test_a_claim_whose_job_lost_the_race_is_given_back(
    api: httpx.AsyncClient, tenant: Any, sim: Any, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.sync.requests as requests_module
    from core.enqueue import enqueue_many, sync_request
    from core.providers import SyncMode

    conn = await connect(api, tenant, sim.url)
    rival = sync_request(conn["id"], tenant.workspace_id, SyncMode.backfill, slot="rival")

    async def rival_first(redis: Any, jobs: Any, **kwargs: Any) -> Any:
        # Another request enqueues between this one's check and its enqueue.
        await enqueue_many(redis, [rival])
        return await enqueue_many(redis, jobs, **kwargs)

    monkeypatch.setattr(requests_module, "enqueue_many", rival_first)
    url = tenant.url(f"/connections/{conn['id']}/sync")
    answer = (await api.post(url, json={"mode": "realtime"}, headers=tenant.headers)).json()
    assert answer == {
        "job_id": rival.job_id,
        "status": "already_queued",
        "connection_id": conn["id"],
        "mode": "backfill",
    }
    row = await fetch_one(CONN, c=conn["id"])
    assert (row.sync_status, row.current_job_id) == ("idle", None)
    await redis_client.delete(f"arq:job:{rival.job_id}", f"metricx:sync:active:{conn['id']}")


async def test_fanout_claims_with_the_sql_built_job_id(make_connection: Any) -> None:
    from core.db.engine import session_scope
    from core.sync import status

    _, conn = await make_connection()
    async with session_scope() as session:
        claimed = await status.claim_due(session, [conn], "realtime", "202612020015")
        again = await status.claim_due(session, [conn], "realtime", "202612020030")
    assert claimed == {conn} and again == set()  # a busy connection is not claimed twice
    row = await fetch_one(CONN, c=conn)
    assert row.sync_status == "queued"
    assert row.current_job_id == SyncJobId(str(conn), "realtime", "202612020015").format()
    assert SyncJobId.parse(row.current_job_id) == SyncJobId(str(conn), "realtime", "202612020015")


async def test_fanout_claims_update_connections_in_place(make_connection: Any) -> None:
    """A tick claims thousands of connections: each claim is a heap-only update (no index entry
    written), because sync_status is in no index and connections' pages keep room for a second copy
    of every row (migrations 0010, 0012), even when one statement claims a whole page."""
    from sqlalchemy import text

    from core.db.engine import session_scope
    from core.sync import status

    conns = [(await make_connection())[1] for _ in range(20)]
    async with session_scope() as session:
        claimed = await status.claim_due(session, conns, "realtime", "202612020045")
        counts = (
            await session.execute(
                text(
                    "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables "
                    "WHERE relname = 'connections'"
                )
            )
        ).one()
    assert claimed == set(conns)
    assert counts.n_tup_upd >= 20
    # 0 while sync_status was indexed; about a quarter of a full page's rows at fillfactor 80
    assert counts.n_tup_hot_upd == counts.n_tup_upd, counts
