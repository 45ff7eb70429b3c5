"""``metricx connections ...``: connect platform accounts and list them (never their tokens).

They talk to PostgreSQL and Redis directly (``DATABASE_URL`` / ``REDIS_URL``), not through the API.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from core.cli.common import console, parse_uuid, print_json, run_quiet
from core.errors import ConfigError
from core.logging import SECRET_KEYS
from core.providers import SyncMode

connections_app = typer.Typer(help="Connections to platform accounts.", no_args_is_help=True)


def _config(pairs: list[str]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--config takes key=value, got {pair!r}")
        if SECRET_KEYS.search(key):
            raise ConfigError(f"--config {key} looks like a secret: pass tokens with --token/--refresh-token")
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

    from core.db.engine import session_scope
    from core.db.models import Workspace
    from core.providers import Credentials
    from core.redis import create_arq_pool
    from core.services import add_connection, enqueue_syncs, validate_account

    async def body() -> dict[str, Any]:
        from core.preflight import require_encryption_keys

        require_encryption_keys()  # before the token travels anywhere: it is stored encrypted
        ws_id = parse_uuid(workspace, "workspace")
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

    out = run_quiet(body)
    if as_json:
        print_json(out)
        return
    console.print(
        f"connected {provider} account {account}: {out['id']} ({out['timezone']}, {out['currency']})",
        highlight=False,
    )
    if out["job"]:
        console.print(f"backfill {out['job']['status']}: {out['job']['job_id']}", highlight=False)


async def connection_rows(workspace: str | None) -> list[Any]:
    from sqlalchemy import select

    from core.db.engine import session_scope
    from core.db.models import Connection

    query = select(Connection).order_by(Connection.created_at, Connection.id)
    if workspace:
        query = query.where(Connection.workspace_id == parse_uuid(workspace, "workspace"))
    async with session_scope() as session:
        return list(await session.scalars(query))


def when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


@connections_app.command("list")
def connections_list(
    workspace: str = typer.Option(None, help="Only this workspace."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List connections (never their tokens)."""
    rows = run_quiet(lambda: connection_rows(workspace))
    if as_json:
        keys = ("id", "workspace_id", "provider", "external_account_id", "name", "status", "sync_status")
        print_json([{k: getattr(c, k) for k in keys} for c in rows])
        return
    table = Table("connection", "workspace", "provider", "account", "name", "status")
    for c in rows:
        table.add_row(
            str(c.id), str(c.workspace_id), c.provider, c.external_account_id, c.name or "-", c.status
        )
    console.print(table)
