"""The demo's story, step by step, against the real processes: backfills, realtime, attribution,
a rate-limit deferral and a reconnect-required connection."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from arq.connections import ArqRedis
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from sqlalchemy import select, text

from core.db.engine import session_scope
from core.db.models import Connection, Workspace
from core.demo.report import DemoKey, demo_api_key
from core.demo.stack import Stack
from core.enqueue import enqueue_sync_job
from core.plugins import Registry
from core.providers import SyncMode
from core.services import create_connection, create_workspace, delete_workspace
from core.services.summary import workspace_summary
from core.state import SETTLED, TERMINAL_RUN, SyncStatus

WORKSPACE = "metricx demo"
FINISHED = SETTLED
# How much simulated time the attribution step lets pass at the platforms (late conversions follow it).
LATE_DATA_S = 2 * 24 * 3600


@dataclass
class DemoConn:
    id: uuid.UUID
    name: str
    provider: str
    role: str
    external_account_id: str


@dataclass
class Demo:
    workspace_id: uuid.UUID
    key: DemoKey
    connections: list[DemoConn]
    #: What a second run found already there (and so did not create again).
    reused: list[str]

    @property
    def api_key(self) -> str:
        return self.key.key


async def setup_workspace(stack: Stack, registry: Registry, *, reset: bool) -> Demo:
    """The demo workspace, its API key and its connections, each reused on a second run."""
    reused: list[str] = []
    async with session_scope() as session:
        if reset:
            for old in (await session.scalars(select(Workspace.id).where(Workspace.name == WORKSPACE))).all():
                await delete_workspace(session, old)
        ws = await session.scalar(select(Workspace).where(Workspace.name == WORKSPACE))
        if ws is not None:
            reused.append(f"workspace {WORKSPACE!r}")
        ws = ws or await create_workspace(session, WORKSPACE)
        key = await demo_api_key(session, ws.id, stack.data_dir)
        if key.reused:
            reused.append("its API key")
        conns: list[DemoConn] = []
        for provider, spec in sorted(registry.simulators.items()):
            for demo in spec.demo_connections(stack.urls[provider]):
                conn = await session.scalar(
                    select(Connection).where(
                        Connection.workspace_id == ws.id,
                        Connection.provider == provider,
                        Connection.external_account_id == demo.external_account_id,
                    )
                )
                if conn is not None:
                    reused.append(f"connection {demo.name!r}")
                else:
                    conn = await create_connection(
                        session,
                        ws.id,
                        provider,
                        demo.external_account_id,
                        demo.credentials,
                        name=demo.name,
                        config=dict(demo.config),
                    )
                conns.append(DemoConn(conn.id, demo.name, provider, demo.role, demo.external_account_id))
        return Demo(ws.id, key, conns, reused)


async def _rows(sql: str, **params: Any) -> list[Any]:
    async with session_scope() as session:
        return list((await session.execute(text(sql), params)).all())


async def connection_states(ids: list[uuid.UUID]) -> dict[uuid.UUID, Any]:
    rows = await _rows(
        "SELECT id, sync_status, last_sync_error, rate_limited_until, timezone, currency, "
        "backfill_completed_at, last_sync_completed_at FROM connections WHERE id = ANY(:ids)",
        ids=ids,
    )
    return {r.id: r for r in rows}


async def wait_settled(stack: Stack, ids: list[uuid.UUID], timeout_s: float = 300) -> dict[uuid.UUID, Any]:
    """Wait until none of the connections is queued or syncing."""
    deadline = time.monotonic() + timeout_s
    while True:
        stack.check_alive()
        states = await connection_states(ids)
        if all(s.sync_status in FINISHED for s in states.values()):
            return states
        if time.monotonic() > deadline:
            return states
        await asyncio.sleep(0.5)


FINAL_RUNS = TERMINAL_RUN


async def wait_jobs(stack: Stack, job_ids: list[str], timeout_s: float = 300) -> None:
    """Wait until each job's latest try has ended (complete, failed or deferred)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stack.check_alive()
        runs = await _rows(_LATEST_RUNS, j=job_ids)
        if len(runs) == len(job_ids) and all(r.status in FINAL_RUNS for r in runs):
            return
        await asyncio.sleep(0.4)


_LATEST_RUNS = (
    "SELECT DISTINCT ON (job_id) job_id, status, slices_done, slices_total, rows_written FROM sync_runs "
    "WHERE job_id = ANY(:j) ORDER BY job_id, try_number DESC"
)


async def backfills(console: Console, stack: Stack, redis: ArqRedis, demo: Demo) -> None:
    """Backfill every connection not backfilled yet, with a progress bar each."""
    todo = [
        c for c in demo.connections if (await connection_states([c.id]))[c.id].backfill_completed_at is None
    ]
    done = len(demo.connections) - len(todo)
    if not todo:
        console.print("  every connection is already backfilled (second run: data dir reused)")
        return
    if done:
        console.print(f"  skipped {done} connections already backfilled (data dir reused)")
    jobs = {
        c.id: (await enqueue_sync_job(str(c.id), str(demo.workspace_id), backfill=True, redis=redis))[
            "job_id"
        ]
        for c in todo
    }
    with Progress(
        TextColumn("  {task.description:<38}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
    ) as progress:
        tasks = {c.id: progress.add_task(c.name, total=1, info="queued") for c in todo}
        while True:
            stack.check_alive()
            runs = await _rows(
                "SELECT DISTINCT ON (job_id) job_id, status, slices_done, slices_total, "
                "rows_written FROM sync_runs WHERE job_id = ANY(:j) ORDER BY job_id, try_number DESC",
                j=list(jobs.values()),
            )
            by_job = {r.job_id: r for r in runs}
            states = await connection_states(list(jobs))
            for cid, job_id in jobs.items():
                run = by_job.get(job_id)
                state = states[cid]
                if run is not None:
                    info = f"{run.slices_done}/{run.slices_total} slices, {run.rows_written} rows"
                    if state.sync_status in FINISHED and state.sync_status != SyncStatus.idle:
                        info = f"[red]{state.sync_status}[/red]: {state.last_sync_error or ''}"[:90]
                    progress.update(
                        tasks[cid], total=max(1, run.slices_total), completed=run.slices_done, info=info
                    )
            if len(by_job) == len(jobs) and all(r.status in FINAL_RUNS for r in by_job.values()):
                break
            await asyncio.sleep(0.4)


def _counts(value: Any) -> str:
    """``{"reconnect_required": 1}`` as "1 reconnect_required" (a number stays a number)."""
    if isinstance(value, dict):
        return ", ".join(f"{n} {reason}" for reason, n in sorted(value.items())) or "none"
    return str(value or 0)


async def realtime_cycle(console: Console, stack: Stack, redis: ArqRedis, demo: Demo) -> None:
    """Run the realtime fan-out the scheduler runs every 15 minutes, and show today's numbers."""
    job = await redis.enqueue_job("scheduled_realtime_sync", _job_id=f"demo:realtime:{int(time.time())}")
    stats = await job.result(timeout=60) if job else {}
    console.print(f"  fan-out: enqueued {stats.get('enqueued', 0)}, skipped {_counts(stats.get('skipped'))}")
    await wait_settled(stack, [c.id for c in demo.connections], timeout_s=120)
    for c in sorted(demo.connections, key=lambda c: c.name):
        await _today_so_far(console, demo.workspace_id, c)


async def _today_so_far(console: Console, workspace_id: uuid.UUID, conn: DemoConn) -> None:
    """One connection's day so far: its latest snapshot of today at its provider's primary level (the
    value the API shows), never a sum of snapshots across time slots or levels."""
    [state] = await _rows(
        "SELECT c.timezone, (now() AT TIME ZONE c.timezone)::date AS today, "
        "(SELECT max(captured_at) FROM metric_snapshots s WHERE s.connection_id = c.id "
        " AND s.metrics_date = (now() AT TIME ZONE c.timezone)::date) AS at "
        "FROM connections c WHERE c.id = :c",
        c=conn.id,
    )
    async with session_scope() as session:
        summary = await workspace_summary(
            session, workspace_id, state.today, state.today, connection_ids=[conn.id]
        )
    if state.at is None or not summary.currencies:
        console.print(f"  {conn.name:<38} today in {state.timezone:<20} no snapshot yet")
        return
    [totals] = summary.currencies
    store = totals.ads.spend == 0 and totals.store_revenue != 0
    what, money = ("sales so far", totals.store_revenue) if store else ("spend so far", totals.ads.spend)
    console.print(
        f"  {conn.name:<38} today in {state.timezone:<20} {what} {money:,.2f} {totals.currency} "
        f"(latest snapshot {state.at:%H:%M} UTC)"
    )


_CONVERSIONS = """
SELECT sum(conversions) AS conv, sum(revenue) AS revenue FROM (
    SELECT DISTINCT ON (s.entity_id, s.metrics_date) s.conversions, s.revenue
    FROM metric_snapshots s
    JOIN entities e ON e.id = s.entity_id
    JOIN connections c ON c.id = s.connection_id
    WHERE s.connection_id = :c AND e.level = :level
      AND s.metrics_date >= (now() AT TIME ZONE c.timezone)::date - 7
      AND s.metrics_date < (now() AT TIME ZONE c.timezone)::date
    ORDER BY s.entity_id, s.metrics_date, s.captured_at DESC
) latest
"""


async def _conversions(registry: Registry, conns: list[DemoConn]) -> dict[uuid.UUID, tuple[Decimal, Decimal]]:
    """Each connection's (conversions, revenue) over the last 7 days, at its provider's top level."""
    out: dict[uuid.UUID, tuple[Decimal, Decimal]] = {}
    for c in conns:
        level = registry.providers[c.provider].capabilities.default_level
        [row] = await _rows(_CONVERSIONS, c=c.id, level=level)
        out[c.id] = (row.conv or Decimal(0), row.revenue or Decimal(0))
    return out


async def attribution(
    console: Console, stack: Stack, redis: ArqRedis, registry: Registry, demo: Demo
) -> None:
    """Late conversions arrive at the platforms; the attribution re-sync rewrites the last days."""
    conns = [c for c in demo.connections if c.role == "normal"]
    before = await _conversions(registry, conns)
    async with httpx.AsyncClient(timeout=10) as http:
        for provider in sorted({c.provider for c in conns}):
            await _control(http, stack.urls[provider], "clock", {"advance_s": LATE_DATA_S})
    console.print("  two days pass at the platforms: conversions are credited late, refunds come in")
    jobs = []
    for c in conns:
        job = await enqueue_sync_job(
            str(c.id), str(demo.workspace_id), mode=SyncMode.attribution, redis=redis
        )
        jobs.append(job["job_id"])
    await wait_jobs(stack, [j for j in jobs if j], timeout_s=180)
    after = await _conversions(registry, conns)
    zero = (Decimal(0), Decimal(0))
    for c in conns:
        (bc, br), (ac, ar) = before.get(c.id, zero), after.get(c.id, zero)
        console.print(
            f"  {c.name:<38} last 7 days: conversions {bc:.1f} -> {ac:.1f}, revenue {br:,.2f} -> {ar:,.2f}"
        )


def _throttle(account: str) -> dict[str, Any]:
    """The platform throttles ``account``: longer than a client waits in place, so the sync is deferred."""
    return {"kind": "throttle", "scope": "account", "account": account, "count": 1, "retry_after_s": 45}


async def _control(http: httpx.AsyncClient, url: str, what: str, body: Any) -> None:
    """One call of the simulators' shared control protocol (``POST /_sim/{what}``)."""
    (await http.post(f"{url}/_sim/{what}", json=body)).raise_for_status()


async def rate_limit(console: Console, stack: Stack, redis: ArqRedis, demo: Demo) -> None:
    """The platform throttles one account: the sync is deferred, not failed, and resumes by itself."""
    for c in [c for c in demo.connections if c.role == "throttled"]:
        async with httpx.AsyncClient(timeout=10) as http:
            await _control(http, stack.urls[c.provider], "faults", _throttle(c.external_account_id))
        job = await enqueue_sync_job(str(c.id), str(demo.workspace_id), redis=redis)
        await wait_jobs(stack, [str(job["job_id"])], timeout_s=60)
        state = (await connection_states([c.id]))[c.id]
        if state.sync_status == SyncStatus.rate_limited:
            wait_s = (state.rate_limited_until - datetime.now(UTC)).total_seconds()
            console.print(
                f"  {c.name:<38} rate_limited: {state.last_sync_error}; deferred, resumes in "
                f"{max(0, wait_s):.0f}s without burning a retry"
            )
        else:
            console.print(f"  {c.name:<38} {state.sync_status}")
