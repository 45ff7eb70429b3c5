"""Prometheus metrics scraped during a small real run: the API's /metrics and a worker's metrics port."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.embedded import free_port
from core.enqueue import enqueue_sync_job
from core.testing.plugin import ManagedProcess
from tests.conftest import fetch_all

pytestmark = pytest.mark.slow
METRICX = shutil.which("metricx", path=str(Path(sys.executable).parent)) or "metricx"


@contextmanager
def api_process(metricx_env: Any, log_path: Path, **env: str) -> Iterator[str]:
    """A real ``metricx api`` process on a free port; yields its base URL."""
    port = free_port()
    proc = ManagedProcess(
        [METRICX, "api", "--host", "127.0.0.1", "--port", str(port)],
        {**os.environ, **metricx_env.env, **env},
        log_path,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/v1/health").status_code == 200:
                    break
            except httpx.TransportError:
                assert proc.proc.poll() is None and time.monotonic() < deadline, proc.output()
                time.sleep(0.1)
        yield url
    finally:
        proc.stop()


def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``{sample name: {sorted labels: value}}`` from a Prometheus text endpoint."""
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[str, Any], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(v for key, v in samples.get(name, {}).items() if set(labels.items()) <= set(key))


async def settled(connection_ids: list[Any], timeout_s: float = 90) -> None:
    """Wait until every connection has a finished backfill try and shows no queued or running sync."""
    ids = [str(c) for c in connection_ids]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = await fetch_all(
            "SELECT DISTINCT connection_id FROM sync_runs WHERE connection_id = ANY(:ids) "
            "AND status IN ('complete', 'failed')",
            ids=ids,
        )
        busy = await fetch_all(
            "SELECT id FROM connections WHERE id = ANY(:ids) AND sync_status IN ('queued', 'syncing')",
            ids=ids,
        )
        if len(runs) == len(ids) and not busy:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("syncs did not settle")


async def test_metrics_match_the_database_during_a_run(
    make_connection: Any, worker_process: Any, redis_client: Any, metricx_env: Any, tmp_path: Path
) -> None:
    from core.config import get_settings

    queue = get_settings().queue_name
    good = [await make_connection() for _ in range(3)]
    bad = [await make_connection(token="tp-revoked-token") for _ in range(2)]
    for ws, conn in good + bad:
        await enqueue_sync_job(str(conn), str(ws), backfill=True, redis=redis_client)

    with api_process(metricx_env, tmp_path / "api.log") as api:
        # Before any worker runs: the queue holds the five jobs, the oldest waiting a while.
        await asyncio.sleep(0.3)
        before = scrape(f"{api}/metrics")
        depth = await redis_client.zcard(queue)
        assert depth >= 5 and value(before, "metricx_queue_depth") == depth
        assert value(before, "metricx_queue_oldest_job_age_seconds") > 0

        port = free_port()
        worker_process(METRICX_WORKER_METRICS_PORT=str(port))
        await settled([c for _, c in good + bad])
        await asyncio.sleep(0.3)  # the last try's counters are written just after its status
        worker = scrape(f"http://127.0.0.1:{port}/metrics")
        api_side = scrape(f"{api}/metrics")
        httpx.get(f"{api}/v1/workspaces/{good[0][0]}/connections", timeout=10)  # 401: no key
        latency = scrape(f"{api}/metrics")

    ids = [str(c) for _, c in good + bad]
    runs = await fetch_all(
        "SELECT status, error_kind FROM sync_runs WHERE connection_id = ANY(:ids) AND mode = 'backfill'",
        ids=ids,
    )
    complete = sum(r.status == "complete" for r in runs)
    failed_auth = sum(r.status == "failed" and r.error_kind == "auth" for r in runs)
    assert (complete, failed_auth) == (3, 2)
    labels = {"kind": "backfill", "provider": "testprovider"}
    assert value(worker, "metricx_jobs_started_total", **labels) == len(runs)
    assert value(worker, "metricx_jobs_finished_total", **labels) == complete
    assert value(worker, "metricx_jobs_failed_total", error_kind="auth", **labels) == failed_auth
    assert value(worker, "metricx_job_duration_seconds_count", outcome="complete", **labels) == complete
    assert value(worker, "metricx_job_duration_seconds_count", outcome="failed", **labels) == failed_auth
    assert value(worker, "metricx_job_duration_seconds_sum", **labels) > 0

    by_status = {
        r.sync_status: r.n
        for r in await fetch_all(
            "SELECT sync_status, count(*) AS n FROM connections WHERE status = 'active' GROUP BY sync_status"
        )
    }
    for status in ("idle", "reconnect_required", "error", "queued", "syncing", "rate_limited"):
        assert value(api_side, "metricx_connections", sync_status=status) == by_status.get(status, 0), status
    assert by_status["reconnect_required"] >= 2
    assert value(api_side, "metricx_queue_depth") == await redis_client.zcard(queue)

    route = "/v1/workspaces/{workspace_id}/connections"
    assert value(latency, "metricx_api_request_duration_seconds_count", route=route, status="401") == 1
    assert value(latency, "metricx_api_request_duration_seconds_count", route="/metrics") >= 2


def test_metrics_bearer_token_guards_the_endpoint(metricx_env: Any, tmp_path: Path) -> None:
    with api_process(metricx_env, tmp_path / "api.log", METRICX_METRICS_BEARER_TOKEN="scrape-secret") as api:
        assert httpx.get(f"{api}/metrics").status_code == 401
        assert httpx.get(f"{api}/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = httpx.get(f"{api}/metrics", headers={"Authorization": "Bearer scrape-secret"})
        assert ok.status_code == 200 and "metricx_connections" in ok.text


async def test_scheduler_leadership_and_last_ticks(
    metricx_env: Any, redis_client: Any, tmp_path: Path
) -> None:
    import signal
    import uuid

    from tests.integration.test_scheduler import FAST, LAST_TICKS_PREFIX, LEASE_PREFIX, SchedulerProcess

    queue = f"arq:queue:metrics:{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {**os.environ, **metricx_env.env, **FAST, "METRICX_QUEUE_NAME": queue}
    scheduler = SchedulerProcess(
        [sys.executable, "-m", "core.scheduler"],
        {**env, "METRICX_SCHEDULER_METRICS_PORT": str(port)},
        tmp_path / "scheduler.log",
    )
    try:
        with api_process(metricx_env, tmp_path / "api.log", METRICX_QUEUE_NAME=queue) as api:
            scheduler.wait_for("[SCHEDULER] Enqueued ")
            own = scrape(f"http://127.0.0.1:{port}/metrics")
            assert value(own, "metricx_scheduler_is_leader") == 1
            assert value(own, "metricx_scheduler_ticks_enqueued_total", entry="realtime_sync") >= 1
            cluster = scrape(f"{api}/metrics")
            recorded = await redis_client.hgetall(LAST_TICKS_PREFIX + queue)
            assert value(cluster, "metricx_scheduler_leader_present") == 1
            ticks = {
                dict(labels)["entry"]: v
                for labels, v in cluster["metricx_scheduler_last_tick_timestamp_seconds"].items()
            }
            # The API read the hash a moment before the test did; the realtime entry may have ticked since.
            assert "realtime_sync" in ticks and len(recorded) == len(ticks)
            for entry, tick_ms in recorded.items():
                if entry == b"realtime_sync":  # ticks every 2 s
                    assert int(tick_ms) / 1000 - 5 <= ticks["realtime_sync"] <= int(tick_ms) / 1000
                else:  # daily entries, recorded once at start
                    assert ticks[entry.decode()] == int(tick_ms) / 1000
            scheduler.stop(signal.SIGTERM)  # a clean exit releases the lease
            assert value(scrape(f"{api}/metrics"), "metricx_scheduler_leader_present") == 0
    finally:
        scheduler.stop(signal.SIGKILL)
        job_ids = [m.decode() for m in await redis_client.zrange(queue, 0, -1)]
        stale = [f"arq:job:{j}" for j in job_ids] + [queue, LAST_TICKS_PREFIX + queue, LEASE_PREFIX + queue]
        await redis_client.delete(*stale)
