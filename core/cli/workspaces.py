"""``metricx workspaces ...``: tenants."""

from __future__ import annotations

from typing import Any

import typer

from core.cli.common import console, print_json, print_rows, run_quiet

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


@workspaces_app.command("list")
def workspaces_list(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Every workspace with its full id, its number of connections and of live API keys."""
    from sqlalchemy import func, select

    from core.db.engine import session_scope
    from core.db.models import ApiKey, Connection, Workspace

    async def body() -> list[dict[str, Any]]:
        connections = (
            select(func.count())
            .select_from(Connection)
            .where(Connection.workspace_id == Workspace.id)
            .scalar_subquery()
        )
        keys = (
            select(func.count())
            .select_from(ApiKey)
            .where(ApiKey.workspace_id == Workspace.id, ApiKey.revoked_at.is_(None))
            .scalar_subquery()
        )
        query = select(Workspace, connections, keys).order_by(Workspace.created_at, Workspace.id)
        async with session_scope() as session:
            rows = (await session.execute(query)).all()
        return [
            {"id": str(w.id), "name": w.name, "created_at": w.created_at, "connections": n, "api_keys": k}
            for w, n, k in rows
        ]

    rows = run_quiet(body)
    if as_json:
        print_json(rows)
        return
    print_rows(
        ("workspace", "name", "connections", "api keys", "created"),
        [(r["id"], r["name"], r["connections"], r["api_keys"], r["created_at"]) for r in rows],
    )
