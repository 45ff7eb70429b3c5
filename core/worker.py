"""The arq worker: ``arq core.worker.WorkerSettings`` or ``python -m core.worker``.

``WorkerSettings`` is one flat class on purpose: arq reads ``__dict__`` only,
so inherited attributes would be silently ignored.
"""

from __future__ import annotations

import gc
import platform
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import structlog
from arq.worker import Function, func

from core import jobs
from core.alerts.delivery import deliver_alert
from core.config import get_settings
from core.db.engine import dispose_engine
from core.errors import ConfigError
from core.infra import infra_error
from core.logging import configure_logging
from core.metrics import WORKER, serve_registry
from core.plugins import get_registry
from core.preflight import require_encryption_keys
from core.redis import deserialize, redis_settings, serialize
from core.state import arq_max_tries
from core.sync.context import RUNNER_KEY
from core.sync.plugin_jobs import run_plugin_sync

log = structlog.get_logger(__name__, component="ARQ")

CORE_JOBS = (
    jobs.process_sync_job,
    jobs.scheduled_realtime_sync,
    jobs.scheduled_attribution_sync,
    jobs.scheduled_compaction,
    jobs.scheduled_reconcile,
    jobs.scheduled_token_upkeep,
    deliver_alert,
)


def build_functions() -> list[Function]:
    """Core jobs plus every plugin's; a duplicate name stops start-up."""
    # A sync job gets one call past its tries, which only closes it (see core.state.CLOSING_TRIES).
    tries = {jobs.process_sync_job.__name__: arq_max_tries(get_settings().max_tries)}
    functions = [func(f, name=f.__name__, max_tries=tries.get(f.__name__)) for f in CORE_JOBS]
    names = {f.name for f in functions}
    registry = get_registry()
    for spec in registry.jobs.values():
        if spec.name in names:
            raise ConfigError(
                f"job {spec.name!r} from plugin {registry.job_owner[spec.name]!r} clashes with a core job"
            )
        names.add(spec.name)
        functions.append(
            func(spec.function, name=spec.name, max_tries=spec.max_tries, timeout=spec.timeout_s)  # type: ignore[arg-type]
        )
    return functions


def startup_lines() -> list[str]:
    s = get_settings()
    return [
        "[ARQ] Worker starting up (job processor)",
        f"[ARQ] Python: {platform.python_version()}",
        f"[ARQ] Queue: {s.queue_name}",
        f"[ARQ] Max concurrent jobs: {s.max_jobs}",
        f"[ARQ] Job timeout: {s.job_timeout_s}s ({s.job_timeout_s / 60:g} min)",
        f"*** Listening on {s.queue_name}...",
    ]


async def startup(ctx: dict[str, Any]) -> None:
    configure_logging()
    require_encryption_keys()  # never run with a key no other process has (issue 19)
    settings = get_settings()
    for line in startup_lines():
        print(line, flush=True)
    ctx["settings"] = settings
    ctx["registry"] = get_registry()
    ctx[RUNNER_KEY] = run_plugin_sync  # plugin sync jobs (core.SyncJobSpec) run inside the engine
    ctx["http"] = httpx.AsyncClient(timeout=settings.http_timeout_s, follow_redirects=False)
    ctx["startup_time"] = time.monotonic()
    # arq hands each job a shallow copy of ctx: keep counters in a shared object, not a plain int.
    ctx["stats"] = {"jobs_processed": 0}
    await _repair_stuck(ctx)
    if settings.reconcile_on_startup:
        from core.reconcile import queue_on_startup

        # Gaps left while no worker ran (a lost backfill, yesterday unclosed) are queued now.
        await queue_on_startup(ctx["redis"])

    if settings.worker_metrics_port is not None:
        ctx["metrics_server"] = serve_registry(WORKER, settings.worker_metrics_port)
        log.info("metrics_serving", port=settings.worker_metrics_port)
    freeze_startup_heap()


def freeze_startup_heap() -> None:
    """Move everything the worker holds after startup (modules, the ORM's metadata, plugins) out of
    the cyclic GC's view. Each full collection then scans only what jobs allocated since: at
    150,000 startup objects one full collection during a 10,000-connection fan-out cost 50-140 ms
    (a third of its CPU); frozen, 3-10 ms. Frozen objects are still freed by reference counting."""
    gc.collect()
    gc.freeze()


async def _repair_stuck(ctx: dict[str, Any]) -> None:
    from core.fanout import repair_stuck

    try:
        repaired = await repair_stuck(ctx)
    except Exception as exc:
        # A worker starting while PostgreSQL restarts still starts (and picks jobs up when it is
        # back); the repair runs again on the next start. Anything else is a real defect.
        fault = infra_error(exc)
        if fault is None:
            raise
        log.warning("stuck_repair_skipped", error=fault.message)
        return
    if repaired:
        log.warning("stuck_connections_repaired", count=repaired)


async def shutdown(ctx: dict[str, Any]) -> None:
    uptime = time.monotonic() - ctx.get("startup_time", time.monotonic())
    processed = ctx.get("stats", {}).get("jobs_processed", 0)
    log.info("worker_stopped", jobs_processed=processed, uptime_s=round(uptime, 1))
    print(f"[ARQ] Jobs processed: {processed}", flush=True)
    print(f"[ARQ] Uptime: {uptime:.0f}s", flush=True)
    if "http" in ctx:
        await ctx["http"].aclose()
    if "metrics_server" in ctx:
        ctx["metrics_server"].shutdown()
    await dispose_engine()


async def on_job_start(ctx: dict[str, Any]) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(job_id=ctx.get("job_id"), job_try=ctx.get("job_try"))


async def on_job_end(ctx: dict[str, Any]) -> None:
    if "stats" in ctx:
        ctx["stats"]["jobs_processed"] += 1
    structlog.contextvars.clear_contextvars()


def _functions_or_exit() -> list[Function]:
    # arq imports this module to read WorkerSettings: a broken plugin set (strict mode, a job
    # name clash) must stop the worker with one line saying what to fix, not a traceback.
    try:
        return build_functions()
    except ConfigError as exc:
        raise SystemExit(f"error: {exc.message}") from None


_settings = get_settings()


class WorkerSettings:
    """Settings arq reads from this class's ``__dict__`` (keep it flat)."""

    functions = _functions_or_exit()
    cron_jobs: list[Any] = []  # the scheduler process enqueues cron work, never the workers
    redis_settings = redis_settings(_settings, reconnect_forever=True)  # rides through Redis restarts
    max_jobs = _settings.max_jobs
    poll_delay = _settings.worker_poll_delay_s
    job_timeout = _settings.job_timeout_s
    keep_result = _settings.keep_result_s
    retry_jobs = True
    max_tries = _settings.max_tries
    queue_name = _settings.queue_name
    job_serializer = staticmethod(serialize)
    job_deserializer = staticmethod(deserialize)
    on_startup = startup
    on_shutdown = shutdown
    on_job_start = on_job_start
    on_job_end = on_job_end
    health_check_interval = 30
    handle_signals = True


def _operator_excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """An operator's mistake that stops the worker (no key, a wrong database) is one line, not a
    traceback; anything else is printed as Python would. The exit code stays 1."""
    from core.preflight import describe

    line = describe(exc) if isinstance(exc, Exception) else None
    if line is None:
        sys.__excepthook__(kind, exc, tb)
    else:
        print(f"error: {line}", file=sys.stderr, flush=True)


def main() -> None:
    """``python -m core.worker``: the same worker as ``arq core.worker.WorkerSettings``."""
    from arq import run_worker

    sys.excepthook = _operator_excepthook
    configure_logging()
    run_worker(WorkerSettings)  # type: ignore[arg-type]


# Started as `arq core.worker.WorkerSettings`: arq's command imports this module and lets a failed
# startup end the process; its last words are then one line naming the setting.
if Path(sys.argv[0]).name == "arq":
    sys.excepthook = _operator_excepthook


if __name__ == "__main__":
    main()
