"""The long-running ``metricx`` commands: worker, scheduler, API and the local demo."""

from __future__ import annotations

from pathlib import Path

import typer

from core.cli.common import fail, run
from core.errors import MetricxError


def _preflight() -> None:
    """The encryption key is set, PostgreSQL and Redis answer: else one line and exit 1."""
    from core.preflight import check_servers

    run(check_servers)


def worker() -> None:
    """Run a worker (the same as `arq core.worker.WorkerSettings`)."""
    from core.worker import main as worker_main

    _preflight()
    worker_main()


def scheduler() -> None:
    """Run the singleton scheduler (the same as `python -m core.scheduler`)."""
    from core.scheduler import main as scheduler_main

    scheduler_main()


def api(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    workers: int = typer.Option(1, help="uvicorn worker processes."),
) -> None:
    """Serve the REST API (uvicorn)."""
    import uvicorn

    from core.logging import configure_logging
    from core.preflight import require_encryption_keys

    try:
        require_encryption_keys()
    except MetricxError as exc:
        raise fail(exc.message) from None
    configure_logging()
    uvicorn.run(
        "core.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,  # the app writes one structured line per request (request_finished)
    )


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
