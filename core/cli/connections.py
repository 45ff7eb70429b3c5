"""``metricx connections ...``: connect platform accounts and list them (never their tokens).

They talk to PostgreSQL and Redis directly (``DATABASE_URL`` / ``REDIS_URL``), not through the API.
"""

from __future__ import annotations

from typing import Any

import typer

from core.cli.common import console, parse_uuid, print_json, print_rows, run_quiet
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
        None,
        envvar="METRICX_CONNECT_TOKEN",
        help="Access token (asked for, hidden, when neither it nor --refresh-token is given).",
    ),
    refresh_token: str = typer.Option(
        None, envvar="METRICX_CONNECT_REFRESH_TOKEN", help="Refresh token (Google needs only this)."
    ),
    config: list[str] = typer.Option([], "--config", help="Provider setting key=value (repeatable)."),
    name: str = typer.Option(None, help="A display name (default: the platform's)."),
    backfill: bool = typer.Option(True, help="Enqueue the history backfill."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Connect an account: the provider validates the token and reads timezone and currency."""
    import httpx

    access = token or (None if refresh_token else typer.prompt("Token", hide_input=True))

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
        creds = Credentials(access_token=access, refresh_token=refresh_token)
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


@connections_app.command("list")
def connections_list(
    workspace: str = typer.Option(None, help="Only this workspace."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List connections with their names and full ids (never their tokens)."""

    async def body() -> tuple[list[Any], dict[Any, Any]]:
        from core.upkeep import credential_states

        rows = await connection_rows(workspace)
        return rows, await credential_states([c.id for c in rows])

    rows, creds = run_quiet(body)
    if as_json:
        print_json([public_row(c, creds[c.id]) for c in rows])
        return
    print_rows(
        ("connection", "workspace", "provider", "account", "name", "status", "sync", "credentials"),
        [
            (c.id, c.workspace_id, c.provider, c.external_account_id, c.name, c.status, c.sync_status, cred)
            for c in rows
            for cred in [creds[c.id][0]]
        ],
    )


def public_row(c: Any, creds: tuple[str, Any]) -> dict[str, Any]:
    """A connection as ``--json`` prints it (the API's fields that matter to a script)."""
    keys = (
        "id",
        "workspace_id",
        "provider",
        "external_account_id",
        "name",
        "status",
        "sync_status",
        "last_sync_completed_at",
        "last_sync_error",
        "last_error_kind",
        "total_syncs_attempted",
        "total_syncs_succeeded",
    )
    out = {k: getattr(c, k) for k in keys}
    out["credentials_state"], out["credentials_expire_at"] = creds
    return out


async def _one(session: Any, connection: str) -> Any:
    from core.db.models import Connection

    conn = await session.get(Connection, parse_uuid(connection, "connection"))
    if conn is None:
        raise ConfigError(f"connection {connection} does not exist")
    return conn


def _set(connection: str, value: str) -> None:
    from core.db.engine import session_scope
    from core.services import set_connection_status
    from core.state import ConnectionStatus

    async def body() -> tuple[str, str]:
        async with session_scope() as session:
            conn = await _one(session, connection)
            await set_connection_status(session, conn, ConnectionStatus(value))
            return conn.provider, conn.external_account_id

    provider, account = run_quiet(body)
    console.print(f"{provider} account {account} ({connection}): {value}", highlight=False)


@connections_app.command("pause")
def connections_pause(connection: str = typer.Argument(..., help="The connection id.")) -> None:
    """Stop syncing a connection (scheduled, manual and pushed) until it is resumed."""
    _set(connection, "paused")


@connections_app.command("resume")
def connections_resume(connection: str = typer.Argument(..., help="The connection id.")) -> None:
    """Sync a paused connection on schedule again; its first sync catches up the days it missed."""
    _set(connection, "active")


@connections_app.command("delete")
def connections_delete(
    connection: str = typer.Argument(..., help="The connection id."),
    delete_data: bool = typer.Option(
        False, "--delete-data", help="Also delete its synced data (default: kept, and back if reconnected)."
    ),
    yes: bool = typer.Option(False, "--yes", help="Do not ask before deleting data."),
) -> None:
    """Disconnect an account: no more syncs, its tokens erased; its data kept unless --delete-data."""
    from core.db.engine import session_scope
    from core.services import delete_connection

    if delete_data and not yes:
        typer.confirm(f"delete connection {connection} and all of its synced data?", abort=True)

    async def body() -> str:
        async with session_scope() as session:
            conn = await _one(session, connection)
            await delete_connection(session, conn, keep_data=not delete_data)
            return f"{conn.provider} account {conn.external_account_id}"

    what = run_quiet(body)
    kept = "its data deleted" if delete_data else "its data kept (connect it again to get it back)"
    console.print(f"deleted {what} ({connection}); {kept}", highlight=False)


def _stdin_credentials() -> dict[str, Any]:
    """Credentials piped on stdin: a JSON object (access_token, refresh_token, expires_at) or a token."""
    import json
    import sys

    raw = sys.stdin.read().strip()
    if not raw:
        raise ConfigError("--stdin: nothing was piped; pipe a token or a JSON object of credentials")
    if raw.startswith("{"):
        try:
            data = json.loads(raw)
        except ValueError:
            raise ConfigError("--stdin: the JSON object of credentials is malformed") from None
        allowed = {"access_token", "refresh_token", "expires_at", "scopes"}
        if not isinstance(data, dict) or not set(data) <= allowed:
            raise ConfigError(f"--stdin: a JSON object with only {', '.join(sorted(allowed))}")
        return data
    return {"access_token": raw}


@connections_app.command("reconnect")
def connections_reconnect(
    connection: str = typer.Argument(..., help="The connection id."),
    token: str = typer.Option(None, envvar="METRICX_CONNECT_TOKEN", help="New access token."),
    refresh_token: str = typer.Option(
        None, envvar="METRICX_CONNECT_REFRESH_TOKEN", help="New refresh token (Google needs only this)."
    ),
    expires_at: str = typer.Option(None, help="When the access token expires (ISO 8601)."),
    stdin: bool = typer.Option(
        False, "--stdin", help="Read the credentials from stdin: a token, or a JSON object."
    ),
    catch_up: bool = typer.Option(True, help="Queue a sync of the days the connection missed."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Give a connection new credentials, keeping its id, data and sync history.

    They must reach the connection's own account; the connection returns to idle and a sync of
    the days it missed is queued. Secrets are never printed: pass them through the environment
    (METRICX_CONNECT_TOKEN), stdin, or the hidden prompt rather than on the command line."""
    from core.db.engine import get_sessionmaker
    from core.services import credentials_from, replace_credentials

    if stdin:
        data = _stdin_credentials()
    else:
        access = token or (None if refresh_token else typer.prompt("Token", hide_input=True))
        data = {"access_token": access, "refresh_token": refresh_token, "expires_at": expires_at}
    try:
        creds = credentials_from(data)
    except (TypeError, ValueError):
        raise ConfigError("expires_at must be an ISO 8601 time, e.g. 2026-03-01T00:00:00Z") from None

    async def body() -> dict[str, Any]:
        from core.preflight import require_encryption_keys

        require_encryption_keys()
        # A plain session: replace_credentials commits before calling the provider and after.
        async with get_sessionmaker()() as session:
            conn = await _one(session, connection)
            done = await replace_credentials(
                session,
                workspace_id=conn.workspace_id,
                connection_id=conn.id,
                provider=conn.provider,
                credentials=creds,
                catch_up=catch_up,
            )
            c = done.connection
            return {
                "id": str(c.id),
                "provider": c.provider,
                "external_account_id": c.external_account_id,
                "status": c.status,
                "sync_status": c.sync_status,
                "days_missing": done.days_missing,
                "catch_up": None
                if done.catch_up is None
                else {**done.catch_up, "mode": done.catch_up_mode.value if done.catch_up_mode else None},
            }

    out = run_quiet(body)
    if as_json:
        print_json(out)
        return
    console.print(
        f"reconnected {out['provider']} account {out['external_account_id']}: {out['id']} "
        f"({out['sync_status']})",
        highlight=False,
    )
    if out["catch_up"]:
        job = out["catch_up"]
        console.print(
            f"catch-up {job['mode']} {job['status']} ({out['days_missing']} days missing): {job['job_id']}",
            highlight=False,
        )
