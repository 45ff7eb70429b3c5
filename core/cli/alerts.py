"""``metricx alerts ...``: a workspace's alert webhooks and their delivery log."""

from __future__ import annotations

import typer

from core.cli.common import console, fail, parse_uuid, print_json, run_quiet
from core.errors import ConfigError

alerts_app = typer.Typer(
    help="Alert webhooks: signed events when a connection needs attention.", no_args_is_help=True
)


@alerts_app.command("add")
def alerts_add(
    workspace: str = typer.Argument(..., help="The workspace id."),
    url: str = typer.Argument(..., help="The https:// URL that receives the events."),
    description: str = typer.Option(None, help="A label for the webhook."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Register a webhook; its signing secret is printed once."""
    from core.alerts.webhooks import create_webhook
    from core.db.engine import session_scope
    from core.db.models import Workspace

    async def body() -> tuple[str, str]:
        ws_id = parse_uuid(workspace, "workspace")
        async with session_scope() as session:
            if await session.get(Workspace, ws_id) is None:
                raise ConfigError(f"workspace {workspace} does not exist")
            hook, secret = await create_webhook(session, ws_id, url, description)
            return str(hook.id), secret

    hook_id, secret = run_quiet(body)
    if as_json:
        print_json({"id": hook_id, "url": url, "secret": secret})
    else:
        console.print(
            f"webhook {hook_id} -> {url}; signing secret (shown once, store it now):", highlight=False
        )
        print(secret)


@alerts_app.command("list")
def alerts_list(
    workspace: str = typer.Argument(..., help="The workspace id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """List the workspace's webhooks."""
    from core.alerts.webhooks import list_webhooks
    from core.db.engine import session_scope

    async def body() -> list[dict[str, str | None]]:
        async with session_scope() as session:
            hooks = await list_webhooks(session, parse_uuid(workspace, "workspace"))
            return [{"id": str(h.id), "url": h.url, "description": h.description} for h in hooks]

    hooks = run_quiet(body)
    if as_json:
        print_json(hooks)
        return
    for hook in hooks:
        console.print(f"{hook['id']}  {hook['url']}  {hook['description'] or ''}", highlight=False)


@alerts_app.command("remove")
def alerts_remove(
    workspace: str = typer.Argument(..., help="The workspace id."),
    webhook: str = typer.Argument(..., help="The webhook id."),
) -> None:
    """Remove a webhook and its delivery log."""
    from core.alerts.webhooks import delete_webhook
    from core.db.engine import session_scope

    async def body() -> bool:
        async with session_scope() as session:
            return await delete_webhook(
                session, parse_uuid(workspace, "workspace"), parse_uuid(webhook, "webhook")
            )

    if not run_quiet(body):
        raise fail(f"workspace {workspace} has no webhook {webhook}")
    console.print(f"removed webhook {webhook}")


@alerts_app.command("deliveries")
def alerts_deliveries(
    workspace: str = typer.Argument(..., help="The workspace id."),
    limit: int = typer.Option(20, help="How many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Show recent deliveries: event, status, attempts, the receiver's last answer."""
    from core.alerts.webhooks import list_deliveries
    from core.db.engine import session_scope

    async def body() -> list[dict[str, object]]:
        async with session_scope() as session:
            rows = await list_deliveries(session, parse_uuid(workspace, "workspace"), limit=limit)
            return [
                {
                    "id": str(d.id),
                    "event": d.event,
                    "status": d.status,
                    "attempts": d.attempts,
                    "last_status_code": d.last_status_code,
                    "last_error": d.last_error,
                    "created_at": d.created_at.isoformat(),
                }
                for d in rows
            ]

    rows = run_quiet(body)
    if as_json:
        print_json(rows)
        return
    for row in rows:
        console.print(
            f"{row['created_at']}  {row['event']}  {row['status']} after {row['attempts']} attempt(s)"
            f"  {row['last_status_code'] or ''} {row['last_error'] or ''}",
            highlight=False,
        )
