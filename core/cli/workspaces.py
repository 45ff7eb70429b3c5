"""``metricx workspaces ...``: tenants."""

from __future__ import annotations

import typer

from core.cli.common import console, print_json, run_quiet

workspaces_app = typer.Typer(help="Workspaces (tenants).", no_args_is_help=True)


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

    workspace_id, ws_name = run_quiet(body)
    if as_json:
        print_json({"id": workspace_id, "name": ws_name})
    else:
        console.print(f"created workspace {ws_name!r}: {workspace_id}", highlight=False)
