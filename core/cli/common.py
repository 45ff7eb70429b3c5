"""What every ``metricx`` command shares: the consoles, one-line failures, the async runner."""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import typer
from rich.console import Console

from core.errors import ConfigError, MetricxError

console = Console()
# Errors are one line whatever the terminal's width (an operator greps them; tests count them).
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr; raise the returned Exit to stop with ``code``."""
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
    except typer.Exit:
        raise
    except MetricxError as exc:
        raise fail(exc.message) from None
    except Exception as exc:
        message = operator_message(exc)
        if message is None:
            raise
        raise fail(message) from None


def operator_message(exc: BaseException) -> str | None:
    """One line for a mistake the operator can fix (server down, wrong database or key), else None."""
    from core.preflight import describe

    try:
        return describe(exc)
    except Exception:  # a broken setting must not hide the original error
        return None


def run_quiet(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a command body with logs on stderr, quiet unless METRICX_CLI_LOG_LEVEL says otherwise."""
    import logging

    from core.config import get_settings
    from core.logging import configure_logging

    level = os.environ.get("METRICX_CLI_LOG_LEVEL", "WARNING")
    configure_logging(get_settings().model_copy(update={"log_level": level}), force=True)
    if "METRICX_CLI_LOG_LEVEL" not in os.environ:
        # arq warns on each Redis connect retry; a command that gives up says so in its one line.
        logging.getLogger("arq.connections").setLevel(logging.ERROR)
    return run(coro_fn)


def parse_uuid(value: str, what: str) -> uuid.UUID:
    """``value`` as a UUID, or a ConfigError naming ``what`` was expected."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ConfigError(f"{what} must be a UUID, got {value!r}") from None


def print_json(value: Any) -> None:
    """Indented JSON on stdout (dates and UUIDs as strings)."""
    print(json.dumps(value, indent=2, default=str))


def print_rows(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A table: rich on a terminal (cells fold, never cut); piped, tab-separated lines with a header
    and every value whole (ids, names, errors), for ``cut``/``awk`` and scripts."""
    if console.is_terminal:
        from rich.table import Table

        table = Table(*headers)
        for row in rows:
            table.add_row(*(_cell(v) for v in row))
        for column in table.columns:
            column.overflow = "fold"
        console.print(table)
        return
    print("\t".join(headers))
    for row in rows:
        print("\t".join(_LINE_BREAKS.sub(" ", _cell(v)) for v in row))


# A tab, or anything str.splitlines() splits on: one row stays one line of as many fields.
_LINE_BREAKS = re.compile("[\t\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if hasattr(value, "strftime"):
        return str(value.strftime("%Y-%m-%d %H:%M:%S"))
    return str(value)
