"""Fault injection against a real stack: PostgreSQL and Redis (owned by this test, so it can stop
and restart them), two arq workers, the scheduler and the API as real processes, and a fleet of
backfills and realtime syncs against the test provider's simulator over HTTP.

Each scenario prints one line of figures (the closing note of issue 13 quotes them) and asserts:
every requested sync completed with every day equal to the simulator's truth, no duplicate rows,
no ``sync_runs`` left ``running``, no process exited on its own.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis
from sqlalchemy import text

from core.config import get_settings
from core.db.engine import dispose_engine, session_scope
from core.db.migrate import upgrade_async
from core.embedded import with_database
from core.enqueue import enqueue_sync_job
from core.plugins import reset_registry
from core.providers import Credentials, SyncMode
from core.testing.http import serve_app
from core.testing.servers import create_database
from tests.faults.stack import Stack

pytestmark = [pytest.mark.slow, pytest.mark.faults, pytest.mark.timeout(300)]

BACKFILLS = 4  # connections backfilling 90 days (6 ads: 540 rows each)
REALTIMES = 4  # connections syncing today only
SLOW_S = 0.6  # per simulator answer: a backfill takes several seconds, so faults land mid-work
DONE_WITHIN_S = 120


@dataclass
class Env:
    stack: Stack
    sim_url: str
    api_url: str
    redis_url: str


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    from metricx_testprovider.simulator import create_app

    # Not under pytest's tmp dir: that is private to root, and PostgreSQL runs as its own user.
    root = Path(tempfile.mkdtemp(prefix="metricx-faults-"))
    root.chmod(0o755)
    stack = Stack(root)
    server = await asyncio.to_thread(stack.start_postgres)
    database_url = with_database(server, "metricx_faults")
    await create_database(server, "metricx_faults")
    redis_url = stack.start_redis(appendonly=True)
    app = create_app()
    with serve_app(app) as sim_url:
        stack.env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "METRICX_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "METRICX_OPERATOR_KEY": "faults-operator-key",
            "METRICX_QUEUE_NAME": "arq:queue:faults",
            "METRICX_RETRY_BASE_S": "1",
            "METRICX_RETRY_MAX_S": "4",
            "METRICX_JOB_TIMEOUT_S": "15",
            "METRICX_LOAD_PLUGINS": "testprovider",
            "METRICX_LOG_LEVEL": "INFO",
        }
        saved = {k: os.environ.get(k) for k in stack.env}
        os.environ.update(stack.env)
        get_settings.cache_clear()
        reset_registry()
        await dispose_engine()
        try:
            await upgrade_async(database_url)
            httpx.post(f"{sim_url}/_control", json={"reset": True, "slow_s": SLOW_S})
            for _ in range(2):
                await asyncio.to_thread(stack.start_worker)
            await asyncio.to_thread(stack.start_scheduler)
            api_url = await asyncio.to_thread(stack.start_api)
            yield Env(stack, sim_url, api_url, redis_url)
        finally:
            await asyncio.to_thread(stack.stop_processes)
            await dispose_engine()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            get_settings.cache_clear()
            reset_registry()
            stack.stop_redis()
            await asyncio.to_thread(stack.stop_postgres)
            if not os.environ.get("METRICX_FAULTS_KEEP"):  # keep the processes' logs to read
                shutil.rmtree(root, ignore_errors=True)


# --- the fleet -----------------------------------------------------------------------------------


@dataclass
class Fleet:
    backfills: list[tuple[uuid.UUID, str]]  # (connection id, account)
    realtimes: list[tuple[uuid.UUID, str]]


async def _sql(sql: str, **params: Any) -> list[Any]:
    async with session_scope() as session:
        return list((await session.execute(text(sql), params)).all())


async def _start_fleet(env: Env) -> Fleet:
    from core.services import create_connection, create_workspace

    fleet = Fleet([], [])
    async with session_scope() as session:
        ws = await create_workspace(session, f"faults-{uuid.uuid4().hex[:6]}")
        for i in range(BACKFILLS + REALTIMES):
            account = f"acct-{uuid.uuid4().hex[:8]}"
            conn = await create_connection(
                session,
                ws.id,
                "testprovider",
                account,
                Credentials(access_token="tp-valid-token"),
                config={"base_url": env.sim_url},
            )
            (fleet.backfills if i < BACKFILLS else fleet.realtimes).append((conn.id, account))
    client = Redis.from_url(env.redis_url)
    try:
        for conn_id, _ in fleet.backfills:
            await enqueue_sync_job(str(conn_id), str(ws.id), mode=SyncMode.backfill, redis=client)
        for conn_id, _ in fleet.realtimes:
            await enqueue_sync_job(str(conn_id), str(ws.id), mode=SyncMode.realtime, redis=client)
    finally:
        await client.aclose()
    return fleet


async def _wait_until_mid_work(fleet: Fleet) -> None:
    ids = [c for c, _ in fleet.backfills]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = await _sql(
            "SELECT count(*) AS n FROM sync_runs WHERE connection_id = ANY(:ids) AND slices_done >= 1",
            ids=ids,
        )
        if rows[0].n:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("no backfill started within 60 s")


async def _all_done(fleet: Fleet) -> bool:
    ids = [c for c, _ in fleet.backfills + fleet.realtimes]
    rows = await _sql(
        "SELECT count(*) AS n FROM connections WHERE id = ANY(:ids) AND total_syncs_succeeded >= 1 "
        "AND sync_status = 'idle'",
        ids=ids,
    )
    return bool(rows[0].n == len(ids))


async def _wait_done(fleet: Fleet) -> float:
    started = time.monotonic()
    while time.monotonic() - started < DONE_WITHIN_S:
        if await _all_done(fleet):
            break
        await asyncio.sleep(0.5)
    return time.monotonic() - started


async def _figures(env: Env, fleet: Fleet) -> dict[str, Any]:
    from metricx_testprovider.simulator import ad_numbers

    ids = [c for c, _ in fleet.backfills + fleet.realtimes]
    accounts = dict(fleet.backfills + fleet.realtimes)
    latest = await _sql(
        "SELECT DISTINCT ON (s.entity_id, s.metrics_date) s.connection_id, e.external_id, s.metrics_date, "
        "s.impressions, s.clicks FROM metric_snapshots s JOIN entities e ON e.id = s.entity_id "
        "WHERE s.connection_id = ANY(:ids) ORDER BY s.entity_id, s.metrics_date, s.captured_at DESC",
        ids=ids,
    )
    days: dict[uuid.UUID, set[date]] = {c: set() for c in ids}
    wrong = 0
    for row in latest:
        truth = ad_numbers(accounts[row.connection_id], row.external_id, row.metrics_date)
        wrong += (row.impressions, row.clicks) != (truth["impressions"], truth["clicks"])
        days[row.connection_id].add(row.metrics_date)
    backfilled = sum(len(days[c]) == 90 for c, _ in fleet.backfills)
    realtime_done = sum(bool(days[c]) for c, _ in fleet.realtimes)
    dupes = await _sql(
        "SELECT count(*) AS n FROM (SELECT 1 FROM metric_snapshots WHERE connection_id = ANY(:ids) "
        "GROUP BY entity_id, metrics_date, captured_at HAVING count(*) > 1) d",
        ids=ids,
    )
    running = await _sql(
        "SELECT count(*) AS n FROM sync_runs WHERE connection_id = ANY(:ids) AND status = 'running'", ids=ids
    )
    done = await _sql(
        "SELECT count(*) AS n FROM connections WHERE id = ANY(:ids) AND total_syncs_succeeded >= 1", ids=ids
    )
    return {
        "complete": f"{done[0].n}/{len(ids)}",
        "backfills_90_days": f"{backfilled}/{len(fleet.backfills)}",
        "realtime_today": f"{realtime_done}/{len(fleet.realtimes)}",
        "days_not_truth": wrong,
        "duplicate_rows": dupes[0].n,
        "runs_left_running": running[0].n,
        "processes_exited": len(env.stack.processes_exited()),
    }


async def _scenario(env: Env, name: str, fault: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    fleet = await _start_fleet(env)
    await _wait_until_mid_work(fleet)
    seen = await fault()
    waited = await _wait_done(fleet)
    figures = {"scenario": name, **seen, **await _figures(env, fleet), "settled_s": round(waited, 1)}
    print("\n[FAULTS] " + " ".join(f"{k}={v}" for k, v in figures.items()), flush=True)
    return figures


def _assert_nothing_lost(figures: dict[str, Any]) -> None:
    total = BACKFILLS + REALTIMES
    assert figures["complete"] == f"{total}/{total}", figures
    assert figures["backfills_90_days"] == f"{BACKFILLS}/{BACKFILLS}", figures
    assert figures["realtime_today"] == f"{REALTIMES}/{REALTIMES}", figures
    assert figures["days_not_truth"] == 0, figures
    assert figures["duplicate_rows"] == 0, figures
    assert figures["runs_left_running"] == 0, figures
    assert figures["processes_exited"] == 0, figures


def _ready_status(env: Env) -> int:
    try:
        return httpx.get(f"{env.api_url}/v1/ready", timeout=10).status_code
    except httpx.TransportError:
        return 0


# --- scenarios -----------------------------------------------------------------------------------


async def test_postgres_down_5_s_mid_backfill(env: Env) -> None:
    async def fault() -> dict[str, Any]:
        await asyncio.to_thread(env.stack.stop_postgres)
        await asyncio.sleep(2)
        ready = await asyncio.to_thread(_ready_status, env)  # the API reports the outage meanwhile
        await asyncio.sleep(3)
        await asyncio.to_thread(env.stack.restart_postgres)
        await dispose_engine()  # this test's own pool holds dead connections
        return {"ready_during_outage": ready}

    figures = await _scenario(env, "postgres_down_5s", fault)
    assert figures["ready_during_outage"] == 503
    _assert_nothing_lost(figures)


async def test_postgres_fast_restart(env: Env) -> None:
    async def fault() -> dict[str, Any]:
        await asyncio.to_thread(env.stack.stop_postgres)
        await asyncio.to_thread(env.stack.restart_postgres)
        await dispose_engine()
        return {}

    _assert_nothing_lost(await _scenario(env, "postgres_fast_restart", fault))


async def test_redis_restart_with_persistence(env: Env) -> None:
    async def fault() -> dict[str, Any]:
        env.stack.stop_redis()
        await asyncio.sleep(2)
        ready = await asyncio.to_thread(_ready_status, env)
        env.stack.start_redis(appendonly=True)
        return {"ready_during_outage": ready}

    figures = await _scenario(env, "redis_restart_aof", fault)
    assert figures["ready_during_outage"] == 503
    _assert_nothing_lost(figures)


async def test_worker_sigkilled_every_few_seconds(env: Env) -> None:
    async def fault() -> dict[str, Any]:
        for i in range(3):
            await asyncio.to_thread(env.stack.kill_worker, i % 2)
            await asyncio.sleep(5)
        return {"workers_killed": 3}

    figures = await _scenario(env, "worker_sigkill_x3", fault)
    assert figures["processes_exited"] == 0, figures
    assert figures["duplicate_rows"] == 0 and figures["days_not_truth"] == 0, figures
    _assert_nothing_lost(figures)


@pytest.mark.xfail(
    reason="a Redis restarted empty loses every queued job: the reconciler (issue 13 part b) re-queues "
    "them from coverage; until it is merged the figures show what is lost",
    strict=False,
)
async def test_redis_restart_without_persistence(env: Env) -> None:
    async def fault() -> dict[str, Any]:
        env.stack.stop_redis()
        await asyncio.sleep(2)
        env.stack.start_redis(appendonly=False)  # every queued job and key is gone
        return {}

    figures = await _scenario(env, "redis_restart_empty", fault)
    assert figures["processes_exited"] == 0, figures
    assert figures["duplicate_rows"] == 0 and figures["days_not_truth"] == 0, figures
    _assert_nothing_lost(figures)
