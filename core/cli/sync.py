"""``metricx status`` and ``metricx sync``: what the connections are doing, and syncing one now."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from core.cli.common import console, err, fail, parse_uuid, print_json, print_rows, run_quiet
from core.cli.connections import connection_rows
from core.errors import ConfigError
from core.providers import SyncMode


async def _coverage(rows: list[Any]) -> dict[Any, str]:
    """Each connection's coverage summary (``87/90 days, 3 queued``)."""
    from datetime import UTC, datetime

    from core.coverage import connection_coverage
    from core.db.engine import session_scope
    from core.plugins import get_registry

    providers = get_registry().providers
    now = datetime.now(UTC)
    out: dict[Any, str] = {}
    async with session_scope() as session:
        for c in rows:
            cov = await connection_coverage(session, c, providers.get(c.provider), now)
            out[c.id] = cov.summary()
    return out


def status(
    workspace: str = typer.Option(None, help="Only this workspace."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (every field, for scripts)."),
) -> None:
    """Connections with their names and full ids, sync status, credentials and data coverage.

    Piped, the table is tab-separated with every value whole (nothing cut to the terminal's width)."""
    from core.cli.connections import public_row

    async def body() -> tuple[list[Any], dict[Any, str], list[str], dict[Any, Any]]:
        from core.upkeep import credential_states

        rows = await connection_rows(workspace)
        creds = await credential_states([c.id for c in rows])
        return rows, await _coverage(rows), await _quotas(), creds

    rows, coverage, quotas, creds = run_quiet(body)
    if as_json:
        out = [public_row(c, creds[c.id]) | {"coverage": coverage[c.id]} for c in rows]
        print_json({"connections": out, "quotas": quotas})
        return
    if not rows:
        console.print("no connections yet: `metricx connections add ...`")
        return
    print_rows(
        (
            "connection",
            "name",
            "provider",
            "account",
            "status",
            "sync",
            "credentials",
            "coverage",
            "last synced",
            "syncs",
            "last error",
        ),
        [
            (
                c.id,
                c.name,
                c.provider,
                c.external_account_id,
                c.status,
                c.sync_status,
                _credentials(*creds[c.id]),
                coverage[c.id],
                c.last_sync_completed_at,
                f"{c.total_syncs_succeeded}/{c.total_syncs_attempted}",
                c.last_sync_error,
            )
            for c in rows
        ],
    )
    # Piped, the quota lines go to stderr: stdout stays one table a script can parse.
    where = console if console.is_terminal else err
    for line in quotas:
        where.print(line, highlight=False)


def _credentials(state: str, expires_at: Any) -> str:
    """``expires_soon (2026-03-01)``: reconnect before that day."""
    if state in ("expires_soon", "expired") and expires_at is not None:
        return f"{state} ({expires_at:%Y-%m-%d})"
    return state


async def _quotas() -> list[str]:
    """One line per quota a provider reports (``ReportsQuotas``), e.g. a developer token's budget."""
    from core.cache import ProviderCache
    from core.plugins import get_registry
    from core.providers import ReportsQuotas
    from core.redis import create_arq_pool

    providers = {n: p for n, p in get_registry().providers.items() if isinstance(p, ReportsQuotas)}
    if not providers:
        return []
    redis = await create_arq_pool()
    try:
        lines = []
        for name, provider in sorted(providers.items()):
            for q in await provider.quota_status(ProviderCache(redis, name)):
                limit = q.get("limit")
                used = f"{q.get('used', 0):,}/{limit:,}" if limit else f"{q.get('used', 0):,}"
                lines.append(
                    f"quota {name} {q.get('name', '')} ({q.get('scope', '')}): {used} {q.get('note', '')}"
                )
        return lines
    finally:
        await redis.aclose()


def sync(
    connection: str = typer.Argument(..., help="The connection id."),
    mode: SyncMode = typer.Option(SyncMode.realtime, help="realtime | attribution | backfill."),
    wait: bool = typer.Option(False, "--wait", help="Wait for the sync, with a progress bar."),
    timeout_s: float = typer.Option(3600, "--timeout", help="Seconds to wait with --wait."),
) -> None:
    """Enqueue a sync of one connection (or find the one already queued); --wait follows it."""
    from sqlalchemy import select

    from core.db.engine import session_scope
    from core.db.models import Connection
    from core.redis import create_arq_pool
    from core.services import enqueue_syncs

    async def body() -> tuple[dict[str, Any], dict[str, Any] | None]:
        redis = await create_arq_pool()
        try:
            async with session_scope() as session:
                conn = await session.scalar(
                    select(Connection).where(Connection.id == parse_uuid(connection, "connection"))
                )
                if conn is None:
                    raise ConfigError(f"connection {connection} does not exist")
                if conn.status != "active":
                    raise ConfigError(f"connection {connection} is {conn.status}; resume it first")
            async with session_scope() as session:
                [result] = await enqueue_syncs(session, redis, [conn], mode)
            console.print(f"sync {result['status']}: {result['job_id']}", highlight=False)
            if not wait or not result["job_id"]:
                return dict(result), None
            return dict(result), await _follow(redis, result["job_id"], mode, timeout_s)
        finally:
            await redis.aclose()

    _, outcome = run_quiet(body)
    if outcome is None:
        return
    if outcome["status"] == "failed":
        raise fail(f"sync failed: {outcome['error']}")
    result = outcome["result"] or {}
    console.print(
        f"sync complete: {result.get('rows', 0)} rows, {result.get('entities', 0)} entities", highlight=False
    )


async def _run_progress(job_id: str) -> tuple[int, int, str | None]:
    from sqlalchemy import select

    from core.db.engine import session_scope
    from core.db.models import SyncRun

    async with session_scope() as session:
        run_row = await session.scalar(
            select(SyncRun).where(SyncRun.job_id == job_id).order_by(SyncRun.try_number.desc()).limit(1)
        )
    if run_row is None:
        return 0, 0, None
    return run_row.slices_done, run_row.slices_total, run_row.status


async def _follow(redis: Any, job_id: str, mode: SyncMode, timeout_s: float) -> dict[str, Any]:
    """Show the job's progress (its sync run's slices) until it finishes; returns its outcome."""
    from arq.jobs import Job, JobStatus

    from core.config import get_settings
    from core.redis import deserialize
    from core.services import job_outcome

    job = Job(job_id, redis, _queue_name=get_settings().queue_name, _deserializer=deserialize)
    deadline = time.monotonic() + timeout_s
    columns = (TextColumn(f"{mode.value}"), BarColumn(), MofNCompleteColumn(), TextColumn("slices"))
    with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task(mode.value, total=None)
        while True:
            done, total, run_status = await _run_progress(job_id)
            if total:
                progress.update(task, total=total, completed=done)
            state = await job.status()
            if state is JobStatus.complete:
                info = await job.result_info()
                if info is not None:
                    verdict, result, error = job_outcome(info.success, info.result)
                    return {"status": verdict, "result": result, "error": error}
            if state is JobStatus.not_found and run_status in {"complete", "failed"}:
                return {"status": run_status, "result": None, "error": "see `metricx status`"}
            if time.monotonic() > deadline:
                raise ConfigError(f"the sync did not finish within {timeout_s:.0f}s; it keeps running")
            await asyncio.sleep(0.25)
