"""``metricx db ...``: the database schema."""

from __future__ import annotations

import typer

from core.cli.common import console, fail
from core.errors import MetricxError
from core.logging import redact_text

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(
    revision: str = typer.Option("heads", help="Target revision (default: every branch's head)."),
) -> None:
    """Create or upgrade the schema (core tables plus every installed plugin's)."""
    import asyncio

    from core.cli.common import operator_message
    from core.db.engine import database_url
    from core.db.migrate import table_names, upgrade

    try:
        url = database_url()
        before = asyncio.run(table_names(url))
        upgrade(url, revision)
        created = sorted(asyncio.run(table_names(url)) - before - {"alembic_version"})
    except MetricxError as exc:
        raise fail(exc.message) from None
    except Exception as exc:
        message = operator_message(exc)
        raise fail(
            message or f"migration failed: {type(exc).__name__}: {redact_text(str(exc))[:300]}"
        ) from None
    if created:
        what = "an empty database" if not before else "the database"
        console.print(f"created {len(created)} tables in {what}: {', '.join(created)}", soft_wrap=True)
    console.print("database is up to date")
