"""``metricx metrics``: a connection's daily numbers, as the API's ``/metrics`` computes them."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import typer

from core.cli.common import console, parse_uuid, print_json, print_rows, run_quiet
from core.errors import ConfigError

MAX_DAYS = 366


def metrics(
    connection: str = typer.Argument(..., help="The connection id (see `metricx connections list`)."),
    start: str = typer.Option(None, help="First day, YYYY-MM-DD (default: 6 days before --end)."),
    end: str = typer.Option(None, help="Last day, YYYY-MM-DD (default: the account's today)."),
    level: str = typer.Option(None, help="Entity level (default: the provider's primary level)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Daily totals of one connection (each day's latest numbers; days in the account's timezone,
    money in its currency): spend, impressions, clicks, conversions, revenue."""
    from sqlalchemy import text

    from core.api.routes.data import BY_LEVEL, _level, _today
    from core.api.schemas import MetricRow
    from core.db.engine import session_scope
    from core.db.models import Connection

    async def body() -> dict[str, Any]:
        async with session_scope() as session:
            conn = await session.get(Connection, parse_uuid(connection, "connection"))
            if conn is None:
                raise ConfigError(f"connection {connection} does not exist")
            last = _day(end, "--end") if end else _today(conn)
            first = _day(start, "--start") if start else last - timedelta(days=6)
            if first > last or (last - first).days >= MAX_DAYS:
                raise ConfigError(f"--start must be on or before --end, at most {MAX_DAYS} days apart")
            chosen = _level(conn, level)
            params = {
                "connection_id": conn.id,
                "workspace_id": conn.workspace_id,
                "level": chosen,
                "entity_id": None,
                "start": first,
                "end": last,
            }
            rows = (await session.execute(text(BY_LEVEL), params)).mappings().all()
            return {
                "connection_id": str(conn.id),
                "name": conn.name,
                "level": chosen,
                "currency": conn.currency,
                "timezone": conn.timezone,
                "start": first,
                "end": last,
                "days": [
                    MetricRow.model_validate(dict(r)).model_dump(mode="json", exclude_none=True) for r in rows
                ],
            }

    out = run_quiet(body)
    if as_json:
        print_json(out)
        return
    columns = ("spend", "impressions", "clicks", "conversions", "revenue")
    if console.is_terminal:  # piped: the table alone, for scripts (--json has these too)
        console.print(
            f"{out['name'] or out['connection_id']}: {out['level']} level, {out['currency']}, "
            f"days in {out['timezone']}",
            highlight=False,
        )
    print_rows(("day", *columns), [(d["metrics_date"], *(d[c] for c in columns)) for d in out["days"]])


def _day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{option} must be a day as YYYY-MM-DD, got {value[:40]!r}") from None
