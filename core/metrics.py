"""Prometheus metrics: one registry per process kind, each served by its own process.

Multiprocess-safe by construction: no registry is shared between processes.

- :data:`WORKER` (a worker's jobs: started / finished / failed by kind and provider,
  durations, retries, deferrals, seconds throttled) is served by each worker on
  ``worker_metrics_port`` (:func:`serve_registry`);
- :data:`SCHEDULER` (this process leads or not, its ticks) on ``scheduler_metrics_port``;
- :data:`API` (request latency by route template, and the cluster's state read from
  PostgreSQL and Redis at scrape time by :func:`refresh_cluster`) at the API's ``/metrics``.

Every name is listed in :data:`METRIC_NAMES`; the alert rules and the Grafana
dashboard in ``deploy/`` are tested against it.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

import core.keys as keys
from core.db.models import Connection
from core.lifecycle import api_version_of
from core.providers import Provider
from core.state import SyncStatus

WORKER = CollectorRegistry(auto_describe=True)
SCHEDULER = CollectorRegistry(auto_describe=True)
API = CollectorRegistry(auto_describe=True)

# Sync jobs take from under a second (realtime) to many minutes (a backfill).
JOB_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)

jobs_started = Counter(
    "metricx_jobs_started", "Sync job tries started.", ["kind", "provider"], registry=WORKER
)
jobs_finished = Counter(
    "metricx_jobs_finished", "Sync job tries that succeeded.", ["kind", "provider"], registry=WORKER
)
jobs_failed = Counter(
    "metricx_jobs_failed",
    "Sync job tries that failed for good (no retry left, or a permanent or auth error).",
    ["kind", "provider", "error_kind"],
    registry=WORKER,
)
job_duration = Histogram(
    "metricx_job_duration_seconds",
    "Duration of one sync job try, by outcome.",
    ["kind", "provider", "outcome"],
    buckets=JOB_BUCKETS,
    registry=WORKER,
)
job_retries = Counter(
    "metricx_job_retries",
    "Sync tries that failed transiently and were retried.",
    ["provider"],
    registry=WORKER,
)
job_deferrals = Counter(
    "metricx_job_deferrals",
    "Sync tries deferred because the provider throttled.",
    ["provider"],
    registry=WORKER,
)
seconds_throttled = Counter(
    "metricx_throttled_seconds",
    "Seconds sync tries waited on a provider's rate limit.",
    ["provider"],
    registry=WORKER,
)

scheduler_is_leader = Gauge(
    "metricx_scheduler_is_leader", "1 while this scheduler process holds the lease.", registry=SCHEDULER
)
scheduler_ticks = Counter(
    "metricx_scheduler_ticks_enqueued", "Cron ticks this scheduler enqueued.", ["entry"], registry=SCHEDULER
)

api_latency = Histogram(
    "metricx_api_request_duration_seconds",
    "API request latency by route template (``/v1/workspaces/{workspace_id}/...``).",
    ["method", "route", "status"],
    registry=API,
)
queue_depth = Gauge(
    "metricx_queue_depth", "Jobs in the arq queue (queued, deferred or running).", registry=API
)
queue_oldest_age = Gauge(
    "metricx_queue_oldest_job_age_seconds",
    "How long the oldest due job has waited past its start time (0: none waiting).",
    registry=API,
)
connections = Gauge(
    "metricx_connections", "Active connections by sync status.", ["sync_status"], registry=API
)
scheduler_leader_present = Gauge(
    "metricx_scheduler_leader_present", "1 if some scheduler holds the lease of this queue.", registry=API
)
scheduler_last_tick = Gauge(
    "metricx_scheduler_last_tick_timestamp_seconds",
    "Unix time of the last tick the scheduler handled, per cron entry.",
    ["entry"],
    registry=API,
)
api_sunset_days = Gauge(
    "metricx_provider_api_sunset_days_left",
    "Days until the platform retires the API version a provider speaks (negative: retired).",
    ["provider", "api_version"],
    registry=API,
)

#: Every metric family metricx exports (counters gain ``_total``, histograms ``_bucket|_sum|_count``).
METRIC_NAMES: frozenset[str] = frozenset(
    next(iter(metric.describe())).name
    for metric in (
        jobs_started,
        jobs_finished,
        jobs_failed,
        job_duration,
        job_retries,
        job_deferrals,
        seconds_throttled,
        scheduler_is_leader,
        scheduler_ticks,
        api_latency,
        queue_depth,
        queue_oldest_age,
        connections,
        scheduler_leader_present,
        scheduler_last_tick,
        api_sunset_days,
    )
)


def serve_registry(registry: CollectorRegistry, port: int, addr: str = "0.0.0.0") -> Any:
    """Serve ``registry`` on ``http://addr:port/metrics`` from a daemon thread; returns the server."""
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server


# --- the worker's side ------------------------------------------------------------------------------


def record_job_end(kind: str, provider: str, outcome: str, started: float, stats: dict[str, Any]) -> None:
    """Count one finished try (``outcome``: complete, retrying, deferred, failed) and its throttling."""
    job_duration.labels(kind, provider, outcome).observe(max(0.0, time.monotonic() - started))
    throttled = float(stats.get("seconds_throttled", 0) or 0)
    if throttled > 0:
        seconds_throttled.labels(provider).inc(throttled)
    if outcome == "complete":
        jobs_finished.labels(kind, provider).inc()
    elif outcome == "retrying":
        job_retries.labels(provider).inc()
    elif outcome == "deferred":
        job_deferrals.labels(provider).inc()


# --- the cluster's state, read at scrape time ---------------------------------------------------------


async def refresh_cluster(
    session: AsyncSession, redis: Redis, queue_name: str, providers: dict[str, Provider]
) -> None:
    """Set the API registry's gauges from PostgreSQL and Redis (called by ``GET /metrics``)."""
    counts = dict(
        (
            await session.execute(
                select(Connection.sync_status, func.count())
                .where(Connection.status == "active")
                .group_by(Connection.sync_status)
            )
        ).all()
    )
    for sync_status in SyncStatus:
        connections.labels(sync_status.value).set(counts.get(sync_status.value, 0))
    now_ms = time.time() * 1000
    queue_depth.set(await redis.zcard(queue_name))
    oldest = await redis.zrangebyscore(queue_name, "-inf", now_ms, start=0, num=1, withscores=True)
    queue_oldest_age.set(max(0.0, (now_ms - oldest[0][1]) / 1000) if oldest else 0.0)
    scheduler_leader_present.set(1 if await redis.exists(keys.SCHEDULER_LEASE_PREFIX + queue_name) else 0)
    ticks = await redis.hgetall(keys.SCHEDULER_LAST_TICKS_PREFIX + queue_name)  # type: ignore[misc]
    scheduler_last_tick.clear()  # an entry no longer scheduled must not linger
    for entry, tick_ms in ticks.items():
        name = entry.decode() if isinstance(entry, bytes) else str(entry)
        scheduler_last_tick.labels(name).set(int(tick_ms) / 1000)
    _set_sunsets(providers, datetime.now(UTC).date())


def _set_sunsets(providers: dict[str, Provider], today: date) -> None:
    for name, provider in sorted(providers.items()):
        api = api_version_of(provider)
        days = api.days_left(today)
        if days is not None:
            api_sunset_days.labels(name, api.version).set(days)


__all__ = [
    "API",
    "METRIC_NAMES",
    "SCHEDULER",
    "WORKER",
    "record_job_end",
    "refresh_cluster",
    "serve_registry",
]
