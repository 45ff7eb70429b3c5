"""The ``metricx`` command line (typer + rich): the app, its command groups and ``main``.

Each command group lives in its own module and is added here explicitly, in the order
``metricx --help`` lists them. Errors print one clear line and exit non-zero.
"""

from __future__ import annotations

import sys

import typer

from core.cli import alerts, connect, connections, db, keys, metrics, plugins, processes, sync, workspaces

app = typer.Typer(
    help="metricx: keep ad-platform and store data fresh for many workspaces.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(db.db_app, name="db")
app.add_typer(keys.keys_app, name="keys")
app.add_typer(workspaces.workspaces_app, name="workspaces")
app.add_typer(connections.connections_app, name="connections")
app.add_typer(alerts.alerts_app, name="alerts")

app.command()(connect.connect)
app.command()(processes.worker)
app.command()(processes.scheduler)
app.command()(plugins.plugins)
app.command()(processes.api)
app.command()(sync.status)
app.command()(sync.sync)
app.command()(metrics.metrics)
app.command("new-provider")(plugins.new_provider)
app.command()(processes.demo)


def main() -> None:
    """Console-script entry point."""
    from pydantic import ValidationError

    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except ValidationError as exc:  # a setting in the environment has the wrong form
        errors = exc.errors()
        where = ".".join(str(p) for p in errors[0]["loc"]) if errors else "a setting"
        what = errors[0]["msg"] if errors else "invalid"
        print(f"error: METRICX_{where.upper()}: {what}", file=sys.stderr)
        sys.exit(1)
