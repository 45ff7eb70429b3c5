"""The ``metricx`` commands that work on tenants' data: workspaces, keys, connections, sync, status.

They talk to PostgreSQL and Redis directly (``DATABASE_URL`` / ``REDIS_URL``), not through the API.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.cli import app, connections_app, console, fail, keys_app, workspaces_app
from core.cli import run as _run_async
from core.errors import ConfigError
from core.providers import SyncMode

T = TypeVar("T")


def run(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a command body with logs on stderr, quiet unless METRICX_CLI_LOG_LEVEL says otherwise."""
    from core.config import get_settings
    from core.logging import configure_logging

    level = os.environ.get("METRICX_CLI_LOG_LEVEL", "WARNING")
    configure_logging(get_settings().model_copy(update={"log_level": level}), force=True)
    return _run_async(coro_fn)


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ConfigError(f"{what} must be a UUID, got {value!r}") from None


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


@workspaces_app.command("create")
def workspaces_create(
    name: str, as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text.")
) -> None:
    """Create a workspace and print its id."""
    from core.db.engine import session_scope
    from core.services import create_workspace

    async def body() -> tuple[str, str]:
        async with session_scope() as session:
            workspace = await create_workspace(session, name)
            return str(workspace.id), workspace.name

    workspace_id, ws_name = run(body)
    if as_json:
        _print_json({"id": workspace_id, "name": ws_name})
    else:
        console.print(f"created workspace {ws_name!r}: {workspace_id}", highlight=False)


@keys_app.command("create")
def keys_create(
    workspace: str = typer.Argument(..., help="The workspace id."),
    name: str = typer.Option(None, help="A label for the key."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Create a workspace API key; it is printed once and only its hash is stored."""
    from core.db.engine import session_scope
    from core.db.models import Workspace
    from core.services import create_api_key

    async def body() -> tuple[str, str]:
        async with session_scope() as session:
            ws_id = _uuid(workspace, "workspace")
            if await session.get(Workspace, ws_id) is None:
                raise ConfigError(f"workspace {workspace} does not exist")
            key, plain = await create_api_key(session, ws_id, name)
            return str(key.id), plain

    key_id, plain = run(body)
    if as_json:
        _print_json({"id": key_id, "workspace_id": workspace, "key": plain})
    else:
        console.print(f"API key {key_id} (shown once, store it now):", highlight=False)
        print(plain)


def _config(pairs: list[str]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--config takes key=value, got {pair!r}")
        config[key] = value
    return config


@connections_app.command("add")
def connections_add(
    workspace: str = typer.Argument(..., help="The workspace id."),
    provider: str = typer.Argument(..., help="An installed provider (see `metricx plugins`)."),
    account: str = typer.Argument(..., help="The platform's account id."),
    token: str = typer.Option(
        ..., envvar="METRICX_CONNECT_TOKEN", prompt=True, hide_input=True, help="Access token."
    ),
    refresh_token: str = typer.Option(None, envvar="METRICX_CONNECT_REFRESH_TOKEN", help="Refresh token."),
    config: list[str] = typer.Option([], "--config", help="Provider setting key=value (repeatable)."),
    name: str = typer.Option(None, help="A display name (default: the platform's)."),
    backfill: bool = typer.Option(True, help="Enqueue the history backfill."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Connect an account: the provider validates the token and reads timezone and currency."""
    import httpx

    from core.api.service import add_connection, enqueue_syncs, validate_account
    from core.db.engine import session_scope
    from core.db.models import Workspace
    from core.providers import Credentials
    from core.redis import create_arq_pool

    async def body() -> dict[str, Any]:
        ws_id = _uuid(workspace, "workspace")
        settings = _config(config)
        creds = Credentials(access_token=token, refresh_token=refresh_token)
        redis = await create_arq_pool()
        try:
            async with session_scope() as session:
                if await session.get(Workspace, ws_id) is None:
                    raise ConfigError(f"workspace {workspace} does not exist")
            async with httpx.AsyncClient(timeout=30) as http:
                validated = await validate_account(provider, account, creds, settings, http=http, redis=redis)
            async with session_scope() as session:
                conn = await add_connection(session, ws_id, account, validated, name=name, config=settings)
            out: dict[str, Any] = {"id": str(conn.id), "timezone": conn.timezone, "currency": conn.currency}
            out["job"] = None
            if backfill:
                async with session_scope() as session:
                    [result] = await enqueue_syncs(session, redis, [conn], SyncMode.backfill)
                out["job"] = dict(result)
            return out
        finally:
            await redis.aclose()

    out = run(body)
    if as_json:
        _print_json(out)
        return
    console.print(
        f"connected {provider} account {account}: {out['id']} ({out['timezone']}, {out['currency']})",
        highlight=False,
    )
    if out["job"]:
        console.print(f"backfill {out['job']['status']}: {out['job']['job_id']}", highlight=False)


async def _connections(workspace: str | None) -> list[Any]:
    from sqlalchemy import select

    from core.db.engine import session_scope
    from core.db.models import Connection

    query = select(Connection).order_by(Connection.created_at, Connection.id)
    if workspace:
        query = query.where(Connection.workspace_id == _uuid(workspace, "workspace"))
    async with session_scope() as session:
        return list(await session.scalars(query))


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


@connections_app.command("list")
def connections_list(
    workspace: str = typer.Option(None, help="Only this workspace."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List connections (never their tokens)."""
    rows = run(lambda: _connections(workspace))
    if as_json:
        keys = ("id", "workspace_id", "provider", "external_account_id", "name", "status", "sync_status")
        _print_json([{k: getattr(c, k) for k in keys} for c in rows])
        return
    table = Table("connection", "workspace", "provider", "account", "name", "status")
    for c in rows:
        table.add_row(
            str(c.id), str(c.workspace_id), c.provider, c.external_account_id, c.name or "-", c.status
        )
    console.print(table)


@app.command()
def status(workspace: str = typer.Option(None, help="Only this workspace.")) -> None:
    """A table of connections and their sync status."""
    rows = run(lambda: _connections(workspace))
    table = Table("connection", "provider", "account", "status", "sync", "last synced", "syncs", "last error")
    colors = {"idle": "green", "queued": "cyan", "syncing": "cyan", "rate_limited": "yellow"}
    for c in rows:
        color = colors.get(c.sync_status, "red")
        table.add_row(
            str(c.id),
            c.provider,
            c.external_account_id,
            c.status,
            f"[{color}]{c.sync_status}[/{color}]",
            _when(c.last_sync_completed_at),
            f"{c.total_syncs_succeeded}/{c.total_syncs_attempted}",
            (c.last_sync_error or "-")[:60],
        )
    if not rows:
        console.print("no connections yet: `metricx connections add ...`")
        return
    console.print(table)


@app.command()
def sync(
    connection: str = typer.Argument(..., help="The connection id."),
    mode: SyncMode = typer.Option(SyncMode.realtime, help="realtime | attribution | backfill."),
    wait: bool = typer.Option(False, "--wait", help="Wait for the sync, with a progress bar."),
    timeout_s: float = typer.Option(3600, "--timeout", help="Seconds to wait with --wait."),
) -> None:
    """Enqueue a sync of one connection (or find the one already queued); --wait follows it."""
    from sqlalchemy import select

    from core.api.service import enqueue_syncs
    from core.db.engine import session_scope
    from core.db.models import Connection
    from core.redis import create_arq_pool

    async def body() -> tuple[dict[str, Any], dict[str, Any] | None]:
        redis = await create_arq_pool()
        try:
            async with session_scope() as session:
                conn = await session.scalar(
                    select(Connection).where(Connection.id == _uuid(connection, "connection"))
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

    _, outcome = run(body)
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

    from core.api.routes.jobs import job_outcome
    from core.config import get_settings
    from core.redis import deserialize

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
