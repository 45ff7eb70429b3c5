"""The ``metricx`` command line (typer + rich). Errors print one clear line and exit non-zero."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from core.errors import MetricxError

app = typer.Typer(
    help="metricx: keep ad-platform and store data fresh for many workspaces.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
keys_app = typer.Typer(help="Encryption keys and workspace API keys.", no_args_is_help=True)
workspaces_app = typer.Typer(help="Workspaces (tenants).", no_args_is_help=True)
connections_app = typer.Typer(help="Connections to platform accounts.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(workspaces_app, name="workspaces")
app.add_typer(connections_app, name="connections")

console = Console()
err = Console(stderr=True)
T = TypeVar("T")


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def run(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run an async command body; known errors become one line and exit code 1."""
    from core.db.engine import dispose_engine

    async def body() -> T:
        try:
            return await coro_fn()
        finally:
            await dispose_engine()

    try:
        return asyncio.run(body())
    except MetricxError as exc:
        raise fail(exc.message) from None
    except OSError as exc:
        raise fail(f"cannot reach a server: {exc}") from None


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


@app.command()
def worker() -> None:
    """Run a worker (the same as `arq core.worker.WorkerSettings`)."""
    from core.worker import main as worker_main

    worker_main()


@app.command()
def scheduler() -> None:
    """Run the singleton scheduler (the same as `python -m core.scheduler`)."""
    from core.scheduler import main as scheduler_main

    scheduler_main()


@app.command()
def plugins(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List installed plugins: version, providers, jobs, schedules, hooks, and any problem."""
    from core.logging import configure_logging
    from core.plugins import get_registry

    configure_logging()  # logs go to stderr, so --json output stays parseable
    try:
        registry = get_registry()
    except MetricxError as exc:
        raise fail(exc.message) from None
    rows: list[dict[str, Any]] = []
    for info in registry.plugins:
        rows.append(
            {
                "name": info.name,
                "version": info.version,
                "distribution": info.distribution,
                "providers": sorted(p for p, owner in registry.provider_owner.items() if owner == info.name),
                "jobs": sorted(j for j, owner in registry.job_owner.items() if owner == info.name),
                "schedules": sorted(
                    f"{e.name} {e.cron}"
                    for e in registry.schedules
                    if registry.schedule_owner[e.name] == info.name
                ),
                "hooks": list(info.hooks),
                "problem": None,
            }
        )
    for problem in registry.problems:
        rows.append(
            {
                "name": problem.name,
                "version": None,
                "distribution": None,
                "providers": [],
                "jobs": [],
                "schedules": [],
                "hooks": [],
                "problem": problem.message,
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("plugin", "version", "providers", "jobs", "schedules", "hooks / problem")
    for row in rows:
        table.add_row(
            row["name"],
            row["version"] or "-",
            ", ".join(row["providers"]) or "-",
            ", ".join(row["jobs"]) or "-",
            ", ".join(row["schedules"]) or "-",
            (row["problem"] and f"[red]{row['problem']}[/red]") or ", ".join(row["hooks"]),
        )
    console.print(table)
    for problem in registry.problems:  # in full: the table column may be cut to the terminal width
        err.print(f"[red]skipped:[/red] {problem.message}", highlight=False, soft_wrap=True)


@app.command()
def api(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    workers: int = typer.Option(1, help="uvicorn worker processes."),
) -> None:
    """Serve the REST API (uvicorn)."""
    import uvicorn

    from core.logging import configure_logging

    configure_logging()
    uvicorn.run(
        "core.api.app:create_app", factory=True, host=host, port=port, workers=workers, log_config=None
    )


from core import cli_commands as _cli_commands  # noqa: E402  (registers the data commands on `app`)

_ = _cli_commands


@app.command("new-provider")
def new_provider(
    name: str = typer.Argument(..., help="Provider name: lowercase letters, digits, underscores."),
    directory: str = typer.Option(".", "--dir", help="Where to create the package folder."),
) -> None:
    """Write a complete provider plugin package (entry point, client, simulator, tests) to start from."""
    from pathlib import Path

    from core.scaffold import write_provider

    try:
        target = write_provider(name, Path(directory))
    except MetricxError as exc:
        raise fail(exc.message) from None
    console.print(f"created {target}\nnext: pip install -e {target} && metricx plugins && pytest {target}")


@app.command()
def demo(
    exit_after: float | None = typer.Option(None, "--exit-after", help="Stop after this many seconds."),
    reset: bool = typer.Option(False, "--reset", help="Start the demo workspace over."),
    data_dir: Path = typer.Option(Path(".metricx/demo"), "--data-dir", help="Embedded servers' data."),
    api_port: int | None = typer.Option(None, "--api-port", help="API port (default: a free one)."),
) -> None:
    """Run everything locally against the simulators and show the sync working."""
    from core.demo import run_demo

    try:
        run_demo(data_dir=data_dir, exit_after_s=exit_after, reset=reset, api_port=api_port)
    except MetricxError as exc:
        raise fail(exc.message) from None


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
