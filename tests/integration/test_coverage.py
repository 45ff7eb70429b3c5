"""Coverage decides what to fetch: real PostgreSQL, Redis, arq worker and the test provider's simulator."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from metricx_testprovider.simulator import ad_numbers

from core.coverage import coverage_of
from core.db.engine import session_scope
from core.enqueue import JobRequest, enqueue_many, enqueue_sync_job
from core.sync.windows import end_of_day
from tests.conftest import fetch_all, fetch_one
from tests.integration.test_api_support import api, connect, tenant

__all__ = ["api", "tenant"]  # fixtures

DAYS = (
    "SELECT count(DISTINCT metrics_date) AS n FROM metric_snapshots "
    "WHERE connection_id = :c AND metrics_date < :t"
)
RUNS = "SELECT mode, status, window_start, window_end, rows_written FROM sync_runs WHERE connection_id = :c "


def today() -> date:
    return datetime.now(UTC).date()  # the simulator's accounts are in UTC


async def coverage(conn: uuid.UUID) -> Any:
    async with session_scope() as session:
        return await coverage_of(session, conn, "UTC", datetime.now(UTC), days=90, revision_days=7)


async def execute(sql: str, **params: Any) -> None:
    from sqlalchemy import text

    async with session_scope() as session:
        await session.execute(text(sql), params)


async def only(conn: uuid.UUID) -> None:
    """Pause every other test's connection: a reconcile pass looks at the whole database."""
    await execute("UPDATE connections SET status = 'paused' WHERE id != :c", c=conn)


async def test_yesterday_is_closed_after_midnight_even_when_another_job_finished_in_between(
    make_connection: Any, run_worker: Any, redis_client: Any, sim: Any
) -> None:
    ws, conn = await make_connection()
    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    await run_worker()
    yesterday = today() - timedelta(days=1)
    # As it stands after a realtime read at 23:50 yesterday and a store job finishing after midnight:
    # yesterday last fetched before its end, the connection's last completed sync after it.
    before_midnight = end_of_day(yesterday, "UTC") - timedelta(minutes=10)
    await execute(
        "UPDATE coverage_days SET fetched_at = :f WHERE connection_id = :c AND day = :d",
        f=before_midnight,
        c=conn,
        d=yesterday,
    )
    await execute("UPDATE connections SET last_sync_completed_at = now() WHERE id = :c", c=conn)
    assert yesterday in (await coverage(conn)).missing
    sim.control(revision=1)  # the platform's final numbers for yesterday differ from 23:50's

    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    await run_worker()
    runs = await fetch_all(RUNS + "ORDER BY started_at", c=conn)
    assert (runs[-1].status, runs[-1].window_start, runs[-1].window_end) == ("complete", yesterday, today())
    assert yesterday not in (await coverage(conn)).missing
    account = (await fetch_one("SELECT external_account_id AS a FROM connections WHERE id = :c", c=conn)).a
    final = await fetch_all(
        "SELECT e.external_id, s.conversions FROM metric_snapshots s JOIN entities e ON e.id = s.entity_id "
        "WHERE s.connection_id = :c AND s.metrics_date = :d AND s.captured_at = :eod",
        c=conn,
        d=yesterday,
        eod=end_of_day(yesterday, "UTC"),
    )
    assert len(final) == 6
    for ad, conversions in final:
        assert conversions == Decimal(ad_numbers(account, ad, yesterday, revision=1)["conversions"])


async def test_a_backfill_resumed_20_days_after_its_interruption_covers_all_90_days(
    make_connection: Any, run_worker: Any, redis_client: Any
) -> None:
    ws, conn = await make_connection()
    await enqueue_sync_job(str(conn), str(ws), backfill=True, redis=redis_client)
    await run_worker()
    # Rewind to the state a backfill interrupted 20 days ago leaves today: its first 30-day slice
    # (then the 30 days before its today) stored 20 days ago, its cursor at that slice's start.
    t = today()
    stored_from, stored_to = t - timedelta(days=50), t - timedelta(days=21)
    for table, column in (("metric_snapshots", "metrics_date"), ("coverage_days", "day")):
        await execute(
            f"DELETE FROM {table} WHERE connection_id = :c AND ({column} < :a OR {column} > :b)",
            c=conn,
            a=stored_from,
            b=stored_to,
        )
    await execute(
        "UPDATE coverage_days SET fetched_at = now() - interval '20 days' WHERE connection_id = :c", c=conn
    )
    await execute(
        "UPDATE connections SET backfill_cursor = :cur, backfill_completed_at = NULL WHERE id = :c",
        cur=stored_from,
        c=conn,
    )
    assert (await coverage(conn)).covered == 30

    await enqueue_sync_job(str(conn), str(ws), backfill=True, redis=redis_client)
    await run_worker()
    assert (await fetch_one(DAYS, c=conn, t=t)).n == 90
    cov = await coverage(conn)
    assert (cov.covered, cov.total, cov.summary()) == (90, 90, "90/90 days")
    resumed = (await fetch_all(RUNS + "ORDER BY started_at", c=conn))[-1]
    # Only the 60 missing days were fetched (the 20 newest and the 40 oldest), 6 ads each.
    assert (resumed.status, resumed.rows_written) == ("complete", 60 * 6)
    assert (resumed.window_start, resumed.window_end) == (t - timedelta(days=90), t - timedelta(days=1))


async def _reconcile(redis_client: Any, run_worker: Any) -> None:
    job_id = f"reconcile:test:{uuid.uuid4().hex[:8]}"
    await enqueue_many(redis_client, [JobRequest("scheduled_reconcile", job_id, kwargs={})])
    await run_worker()


async def test_a_failed_backfill_is_requeued_by_the_reconciler_and_ends_with_full_coverage(
    make_connection: Any, run_worker: Any, redis_client: Any, sim: Any
) -> None:
    ws, conn = await make_connection()
    sim.control(malformed=True)  # a permanent error: the backfill fails for good
    await enqueue_sync_job(str(conn), str(ws), backfill=True, redis=redis_client)
    await run_worker()
    row = await fetch_one("SELECT sync_status FROM connections WHERE id = :c", c=conn)
    assert row.sync_status == "error"
    assert (await coverage(conn)).covered < 90
    sim.control(malformed=False)

    await only(conn)
    await _reconcile(redis_client, run_worker)
    cov = await coverage(conn)
    assert (cov.covered, cov.total) == (90, 90)
    assert (await fetch_one(DAYS, c=conn, t=today())).n == 90
    row = await fetch_one("SELECT sync_status, backfill_completed_at FROM connections WHERE id = :c", c=conn)
    assert row.sync_status == "idle" and row.backfill_completed_at is not None
    runs = await fetch_all(RUNS + "AND mode = 'backfill' ORDER BY started_at", c=conn)
    assert [r.status for r in runs][-1] == "complete"

    # Complete coverage: a further pass queues nothing.
    before = len(await fetch_all(RUNS, c=conn))
    await _reconcile(redis_client, run_worker)
    assert len(await fetch_all(RUNS, c=conn)) == before


async def test_the_reconciler_closes_yesterday_with_a_realtime_sync_and_skips_paused_connections(
    make_connection: Any, run_worker: Any, redis_client: Any
) -> None:
    ws, conn = await make_connection()
    await enqueue_sync_job(str(conn), str(ws), backfill=True, redis=redis_client)
    await run_worker()
    yesterday = today() - timedelta(days=1)
    await execute(
        "UPDATE coverage_days SET fetched_at = :f WHERE connection_id = :c AND day = :d",
        f=end_of_day(yesterday, "UTC") - timedelta(minutes=5),
        c=conn,
        d=yesterday,
    )
    await only(conn)
    await execute("UPDATE connections SET status = 'paused' WHERE id = :c", c=conn)
    await _reconcile(redis_client, run_worker)
    assert len(await fetch_all(RUNS, c=conn)) == 1  # paused: left alone

    await execute("UPDATE connections SET status = 'active' WHERE id = :c", c=conn)
    await _reconcile(redis_client, run_worker)
    last = (await fetch_all(RUNS + "ORDER BY started_at", c=conn))[-1]
    assert (last.mode, last.status, last.window_start) == ("realtime", "complete", yesterday)
    assert (await coverage(conn)).complete


async def test_the_api_shows_coverage_and_the_days_a_queued_backfill_will_fetch(
    api: Any, tenant: Any, sim: Any, run_worker: Any
) -> None:
    conn = await connect(api, tenant, sim.url)
    url = tenant.url(f"/connections/{conn['id']}")
    empty = (await api.get(url + "/coverage", headers=tenant.headers)).json()
    assert (empty["days_covered"], empty["days_total"], empty["summary"]) == (0, 90, "0/90 days")
    sync = await api.post(url + "/sync", json={"mode": "backfill"}, headers=tenant.headers)
    assert sync.status_code == 202
    queued = (await api.get(url, headers=tenant.headers)).json()["coverage"]
    assert queued["summary"] == "0/90 days, 90 queued" and queued["days_queued"] == 90
    await run_worker()
    done = (await api.get(url, headers=tenant.headers)).json()["coverage"]
    assert done["summary"] == "90/90 days"
    assert (done["days_missing"], done["oldest_missing"], done["days_revisable"]) == (0, None, 7)


async def test_a_starting_worker_reconciles_a_connection_whose_backfill_was_lost(
    make_connection: Any, run_worker: Any, monkeypatch: Any
) -> None:
    from core.config import get_settings

    _, conn = await make_connection()  # created, its backfill job lost (never ran)
    await only(conn)
    monkeypatch.setenv("METRICX_RECONCILE_ON_STARTUP", "true")
    get_settings.cache_clear()
    try:
        # Bounded: the pass is queued during start-up, before the unbounded runner's first look.
        await run_worker(max_burst_jobs=1)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    await run_worker()  # the backfill the pass queued
    assert (await coverage(conn)).complete
    runs = await fetch_all(RUNS, c=conn)
    assert [(r.mode, r.status) for r in runs] == [("backfill", "complete")]


async def test_attribution_adds_the_deep_tier_on_the_connections_weekday_only() -> None:
    from metricx_meta.provider import MetaProvider

    from core.config import Settings
    from core.db.models import Connection
    from core.sync.engine import SyncJob
    from core.sync.fetch import plan_windows

    now = datetime.now(UTC)
    t = now.date()
    caps = MetaProvider.capabilities
    for offset, deep in ((0, True), (1, False)):
        cid = uuid.UUID(int=(t.weekday() + offset) % 7 + 7 * 12345)
        job = SyncJob(cid, uuid.uuid4(), "attribution", "job", 1)
        windows = await plan_windows(job, caps, Connection(id=cid, timezone="UTC"), Settings(), now)
        spans = [(w.start, w.end) for w in windows]
        recent = (t - timedelta(days=7), t - timedelta(days=1))
        assert spans == ([recent, (t - timedelta(days=28), t - timedelta(days=8))] if deep else [recent])


async def test_unavailable_days_are_neither_missing_nor_covered_and_a_stale_mark_is_asked_again(
    make_connection: Any, run_worker: Any, redis_client: Any
) -> None:
    from core.coverage import record_unavailable, unavailable_days

    ws, conn = await make_connection()
    await enqueue_sync_job(str(conn), str(ws), backfill=True, redis=redis_client)
    await run_worker()
    t = today()
    old = [t - timedelta(days=d) for d in range(61, 91)]
    now = datetime.now(UTC)
    async with session_scope() as session:
        # a provider that cannot read days 61..90 any more: the days it already closed stay closed
        await record_unavailable(session, conn, old, now, "the app lacks a scope", "UTC")
    cov = await coverage(conn)
    assert (cov.covered, len(cov.missing), len(cov.unavailable)) == (90, 0, 0)

    await execute(
        "DELETE FROM coverage_days WHERE connection_id = :c AND day < :d", c=conn, d=t - timedelta(days=60)
    )
    async with session_scope() as session:
        await record_unavailable(session, conn, old, now, "the app lacks a scope", "UTC")
        assert set(await unavailable_days(session, conn, t - timedelta(days=90), t)) == set(old)
    cov = await coverage(conn)
    assert (cov.covered, len(cov.missing), len(cov.unavailable)) == (60, 0, 30)
    assert cov.unavailable_reason == "the app lacks a scope"
    assert cov.as_dict()["days_unavailable"] == 30 and "30 not available" in cov.summary()

    # a week later the mark is stale: the days are missing again, so the reconciler asks once more
    await execute(
        "UPDATE coverage_days SET fetched_at = fetched_at - interval '8 days' "
        "WHERE connection_id = :c AND unavailable_reason IS NOT NULL",
        c=conn,
    )
    cov = await coverage(conn)
    assert (len(cov.missing), len(cov.unavailable)) == (30, 0)
