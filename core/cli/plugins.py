"""``metricx plugins`` and ``metricx new-provider``: what is installed, and a new plugin to start from."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from core.cli.common import console, err, fail
from core.errors import MetricxError

if TYPE_CHECKING:
    from core.plugins import Registry


def plugins(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List installed plugins: version, providers, jobs, schedules, hooks, and any problem."""
    from core.lifecycle import sunset_notices
    from core.logging import configure_logging
    from core.plugins import get_registry

    configure_logging()  # logs go to stderr, so --json output stays parseable
    try:
        registry = get_registry()
    except MetricxError as exc:
        raise fail(exc.message) from None
    today = datetime.now(UTC).date()
    rows = _rows(registry, today)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    console.print(_table(rows))
    for problem in registry.problems:  # in full: the table column may be cut to the terminal width
        err.print(f"[red]skipped:[/red] {problem.message}", highlight=False, soft_wrap=True)
    for notice in sunset_notices(registry.providers, today):
        err.print(f"[yellow]warning:[/yellow] {notice.message()}", highlight=False, soft_wrap=True)


def _rows(registry: Registry, today: date) -> list[dict[str, Any]]:
    from core.lifecycle import describe

    rows: list[dict[str, Any]] = []
    for info in registry.plugins:
        providers = sorted(p for p, owner in registry.provider_owner.items() if owner == info.name)
        rows.append(
            {
                "name": info.name,
                "version": info.version,
                "distribution": info.distribution,
                "providers": providers,
                "api_versions": {p: describe(registry.providers[p], today) for p in providers},
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
                "api_versions": {},
                "jobs": [],
                "schedules": [],
                "hooks": [],
                "problem": problem.message,
            }
        )
    return rows


_STATUS_COLOUR = {"supported": "", "sunset_soon": "yellow", "sunset": "red"}


def _api_cell(api_versions: dict[str, dict[str, Any]]) -> str:
    cells = []
    for name, api in api_versions.items():
        text = f"{name} {api['version']}"
        if api["sunset"]:
            text += f" (sunset {api['sunset']})"
        colour = _STATUS_COLOUR[api["status"]]
        cells.append(f"[{colour}]{text}[/{colour}]" if colour else text)
    return ", ".join(cells) or "-"


def _table(rows: list[dict[str, Any]]) -> Table:
    table = Table("plugin", "version", "providers", "API (sunset)", "jobs", "schedules", "hooks / problem")
    for row in rows:
        table.add_row(
            row["name"],
            row["version"] or "-",
            ", ".join(row["providers"]) or "-",
            _api_cell(row["api_versions"]),
            ", ".join(row["jobs"]) or "-",
            ", ".join(row["schedules"]) or "-",
            (row["problem"] and f"[red]{row['problem']}[/red]") or ", ".join(row["hooks"]),
        )
    return table


def new_provider(
    name: str = typer.Argument(..., help="Provider name: lowercase letters, digits, underscores."),
    directory: str = typer.Option(
        ".", "--dir", help="The folder to write the package in (it creates metricx-<name> there)."
    ),
) -> None:
    """Write a complete provider plugin package (entry point, client, simulator, tests) to start from."""
    from pathlib import Path

    from core.scaffold import write_provider

    try:
        target = write_provider(name, Path(directory))
    except MetricxError as exc:
        raise fail(exc.message) from None
    where = str(target) if target.is_absolute() else f"./{target}"
    console.print(
        f"created {where}\n"
        f"next: pip install -e '{where}[test]' && metricx plugins && python -m pytest {where}\n"
        "(a worker, scheduler or API already running loads plugins at start: restart it)",
        highlight=False,
    )
