"""``metricx demo``: embedded PostgreSQL and Redis, every provider's simulator, the real API, worker
and scheduler processes, and a guided run of what a sync platform does."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from core.demo.report import api_summary, print_commands, print_totals
from core.demo.scenario import (
    Demo,
    attribution,
    backfills,
    connection_states,
    rate_limit,
    realtime_cycle,
    setup_workspace,
)
from core.demo.stack import Stack, build_stack, start_simulators, wait_for_port, write_cli_env
from core.embedded import free_port


def _configure(stack: Stack) -> None:
    """This process talks to the same servers as its children."""
    from core.config import get_settings
    from core.plugins import reset_registry

    os.environ.update(stack.env)
    get_settings.cache_clear()
    reset_registry()


async def _story(console: Console, stack: Stack, reset: bool) -> Demo:
    from core.db.migrate import upgrade_async
    from core.enqueue import get_arq_pool
    from core.plugins import get_registry

    await upgrade_async(stack.database_url)
    registry = get_registry()
    demo = await setup_workspace(stack, registry, reset=reset)
    if demo.reused:
        console.print(f"Second run (data dir reused), not created again: {', '.join(demo.reused)}")
    redis = await get_arq_pool()
    console.rule("[bold]1. Backfill: 90 days per connection, newest slice first, checkpointed")
    await backfills(console, stack, redis, demo)
    console.rule("[bold]2. Realtime: the 15-minute fan-out writes today's cumulative totals")
    await realtime_cycle(console, stack, redis, demo)
    console.rule("[bold]3. Attribution: late conversions arrive, the re-sync rewrites past days")
    await attribution(console, stack, redis, registry, demo)
    console.rule("[bold]4. Rate limit: a throttled account is deferred, not failed")
    await rate_limit(console, stack, redis, demo)
    return demo


_SUMMARY = """
SELECT c.name, c.provider, c.timezone, c.currency, c.sync_status, c.last_sync_completed_at, c.last_sync_error,
       (SELECT count(*) FROM metric_snapshots s WHERE s.connection_id = c.id) AS rows
FROM connections c WHERE c.workspace_id = :w ORDER BY c.provider, c.name
"""


async def _summary(console: Console, stack: Stack, demo: Demo, api_url: str) -> None:
    from sqlalchemy import text

    from core.db.engine import session_scope
    from core.services.summary import default_range, rates_from_settings, workspace_summary

    console.rule("[bold]Summary")
    async with session_scope() as session:
        rows = (
            await session.execute(
                text(_SUMMARY),
                {"w": demo.workspace_id},
            )
        ).all()
    table = Table("connection", "provider", "timezone", "status", "rows", "last sync (UTC)")
    for r in rows:
        color = {"idle": "green", "rate_limited": "yellow"}.get(r.sync_status, "red")
        table.add_row(
            r.name,
            r.provider,
            f"{r.timezone} {r.currency or ''}",
            f"[{color}]{r.sync_status}[/{color}]",
            str(r.rows),
            f"{r.last_sync_completed_at:%Y-%m-%d %H:%M:%S}" if r.last_sync_completed_at else "-",
        )
    console.print(table)
    for r in rows:
        if r.sync_status == "reconnect_required":
            console.print(f"  [red]{r.name}[/red] needs reconnecting: {r.last_sync_error}")
    since, until = default_range()
    async with session_scope() as session:
        summary = await workspace_summary(
            session, demo.workspace_id, since, until, rates=rates_from_settings()
        )
    body = await api_summary(api_url, demo.api_key, demo.workspace_id, since, until)
    print_totals(console, summary, body, stack.data_dir)
    print_commands(console, api_url, demo.workspace_id, demo.key, stack)
    cli_env = write_cli_env(stack, demo.workspace_id)
    metricx = Path(sys.executable).parent / "metricx"
    console.print(
        f"Connect an account (log in at the simulator, or use the dashboard's Connect button): "
        f". {cli_env.resolve()} && {metricx} connect meta -w {demo.workspace_id} --listen --all",
        soft_wrap=True,
        highlight=False,
    )
    console.print(f"Logs: {stack.data_dir / 'logs'}")


def run_demo(*, data_dir: Path, exit_after_s: float | None, reset: bool, api_port: int | None) -> None:
    """Start everything, tell the story, print the summary, then keep running."""
    from core.db.engine import dispose_engine
    from core.plugins import get_registry

    console = Console(width=None if sys.stdout.isatty() else 120)
    started = time.monotonic()
    console.print("[bold]metricx demo[/bold]: starting PostgreSQL, Redis, simulators, API, worker, scheduler")
    stack = build_stack(data_dir)
    _configure(stack)
    from core.config import Settings
    from core.logging import configure_logging

    # The story is printed; this process's own log lines would only clutter it (children log to files).
    configure_logging(Settings(log_level="WARNING"), force=True)
    try:
        registry = get_registry()
        if not registry.simulators:
            raise SystemExit(
                "no provider with a simulator is installed: install metricx-meta, metricx-google "
                "or metricx-shopify"
            )
        start_simulators(stack, {p: [s.module, *s.args] for p, s in registry.simulators.items()})
        for spec in registry.simulators.values():
            stack.env.update(spec.worker_env(stack.urls[spec.provider]))
        port = api_port or free_port()
        api_url = f"http://127.0.0.1:{port}"
        # The connect flow's redirect URL ({public_url}/v1/connect/{provider}/callback) is this API.
        stack.env["METRICX_PUBLIC_URL"] = api_url
        _configure(stack)
        python = sys.executable
        from core.db.migrate import upgrade

        upgrade(stack.database_url)
        metricx = str(Path(python).parent / "metricx")
        stack.start("api", [metricx, "api", "--host", "127.0.0.1", "--port", str(port)])
        stack.start("worker", [python, "-m", "arq", "core.worker.WorkerSettings"])
        stack.start("scheduler", [python, "-m", "core.scheduler"])
        wait_for_port("127.0.0.1", port)
        for name, url in stack.urls.items():
            console.print(f"  simulator {name}: {url}")
        asyncio.run(_run_story(console, stack, reset, api_url))
        console.print(
            f"\nReady in {time.monotonic() - started:.0f}s. "
            + (f"Exiting after {exit_after_s:.0f}s." if exit_after_s is not None else "Ctrl-C to stop.")
        )
        deadline = None if exit_after_s is None else time.monotonic() + exit_after_s
        while deadline is None or time.monotonic() < deadline:
            stack.check_alive()
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        stack.stop()
        asyncio.run(dispose_engine())


async def _run_story(console: Console, stack: Stack, reset: bool, api_url: str) -> None:
    from core.db.engine import dispose_engine

    try:
        demo = await _story(console, stack, reset)
        await _summary(console, stack, demo, api_url)
    finally:
        await dispose_engine()


__all__ = ["connection_states", "run_demo"]
