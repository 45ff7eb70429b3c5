"""``metricx db ...``: the database schema."""

from __future__ import annotations

import typer

from core.cli.common import console, fail
from core.errors import MetricxError

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(
    revision: str = typer.Option("heads", help="Target revision (default: every branch's head)."),
) -> None:
    """Create or upgrade the schema (core tables plus every installed plugin's)."""
    from core.db.engine import database_url
    from core.db.migrate import upgrade

    try:
        upgrade(database_url(), revision)
    except MetricxError as exc:
        raise fail(exc.message) from None
    except Exception as exc:
        raise fail(f"migration failed: {type(exc).__name__}: {exc}") from None
    console.print("database is up to date")
