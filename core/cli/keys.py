"""``metricx keys ...``: encryption keys and workspace API keys."""

from __future__ import annotations

import typer

from core.cli.common import console, parse_uuid, print_json, run, run_quiet
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
