"""``metricx keys ...``: encryption keys and workspace API keys."""

from __future__ import annotations

from typing import Any

import typer

from core.cli.common import console, parse_uuid, print_json, print_rows, run, run_quiet
from core.errors import ConfigError

keys_app = typer.Typer(help="Encryption keys and workspace API keys.", no_args_is_help=True)


@keys_app.command("generate")
def keys_generate() -> None:
    """Print a new Fernet key for METRICX_ENCRYPTION_KEYS."""
    from cryptography.fernet import Fernet

    print(Fernet.generate_key().decode())


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every stored token under the first key of METRICX_ENCRYPTION_KEYS."""
    from core.db.engine import session_scope
    from core.services import rotate_credentials

    async def body() -> int:
        async with session_scope() as session:
            return await rotate_credentials(session)

    count = run(body)
    console.print(f"re-encrypted {count} credential rows under the current key")


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
            ws_id = parse_uuid(workspace, "workspace")
            if await session.get(Workspace, ws_id) is None:
                raise ConfigError(f"workspace {workspace} does not exist")
            key, plain = await create_api_key(session, ws_id, name)
            return str(key.id), plain

    key_id, plain = run_quiet(body)
    if as_json:
        print_json({"id": key_id, "workspace_id": workspace, "key": plain})
    else:
        console.print(f"API key {key_id} (shown once, store it now):", highlight=False)
        print(plain)


@keys_app.command("list")
def keys_list(
    workspace: str = typer.Argument(..., help="The workspace id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """A workspace's API keys: id, label, prefix and whether revoked (never a key itself)."""
    from sqlalchemy import select

    from core.db.engine import session_scope
    from core.db.models import ApiKey, Workspace

    async def body() -> list[dict[str, Any]]:
        ws_id = parse_uuid(workspace, "workspace")
        async with session_scope() as session:
            if await session.get(Workspace, ws_id) is None:
                raise ConfigError(f"workspace {workspace} does not exist")
            keys = await session.scalars(
                select(ApiKey).where(ApiKey.workspace_id == ws_id).order_by(ApiKey.created_at, ApiKey.id)
            )
            return [
                {
                    "id": str(k.id),
                    "name": k.name,
                    "prefix": k.prefix,
                    "created_at": k.created_at,
                    "revoked_at": k.revoked_at,
                }
                for k in keys
            ]

    rows = run_quiet(body)
    if as_json:
        print_json(rows)
        return
    print_rows(
        ("key", "name", "prefix", "created", "revoked"),
        [(r["id"], r["name"], r["prefix"], r["created_at"], r["revoked_at"]) for r in rows],
    )


@keys_app.command("revoke")
def keys_revoke(key: str = typer.Argument(..., help="The API key's id (see `metricx keys list`).")) -> None:
    """Revoke a workspace API key: it stops working at once. Revoking twice is harmless."""
    from datetime import UTC, datetime

    from core.db.engine import session_scope
    from core.db.models import ApiKey

    async def body() -> tuple[str, bool]:
        async with session_scope() as session:
            row = await session.get(ApiKey, parse_uuid(key, "key"))
            if row is None:
                raise ConfigError(f"API key {key} does not exist (the id, not the key: `metricx keys list`)")
            fresh = row.revoked_at is None
            if fresh:
                row.revoked_at = datetime.now(UTC)
            return str(row.workspace_id), fresh

    workspace_id, fresh = run_quiet(body)
    state = "revoked" if fresh else "was already revoked"
    console.print(f"API key {key} of workspace {workspace_id} {state}", highlight=False)
