"""The real `metricx api` process: a sync end to end over HTTP, and a property-based run over its OpenAPI."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.testing.servers import free_port
from tests.integration.test_api_support import OPERATOR, as_numbers, truth

METRICX = shutil.which("metricx", path=str(Path(sys.executable).parent)) or "metricx"


@pytest.fixture(scope="module")
def api_server(metricx_env: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``metricx api`` on a free port; yields its base URL."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("api") / "api.log"
    # Only the test provider: generated requests must never reach a real platform's API.
    env = {
        **os.environ,
        **metricx_env.env,
        "METRICX_LOG_FORMAT": "json",
        "METRICX_LOAD_PLUGINS": "testprovider",
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [METRICX, "api", "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=log
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/v1/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
            assert proc.poll() is None, log_path.read_text()
        try:
            yield url
        finally:
            proc.terminate()
            proc.wait(20)
    # Request ids are bound into the process's log lines.
    assert '"request_id"' in log_path.read_text()


def tenant_over_http(url: str) -> tuple[str, dict[str, str]]:
    ws = httpx.post(f"{url}/v1/workspaces", json={"name": "http"}, headers=OPERATOR).json()["id"]
    key = httpx.post(f"{url}/v1/workspaces/{ws}/api-keys", json={}, headers=OPERATOR).json()["key"]
    return ws, {"Authorization": f"Bearer {key}"}


def test_real_api_process_runs_a_sync_end_to_end(api_server: str, sim: Any, worker_process: Any) -> None:
    ready = httpx.get(f"{api_server}/v1/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
    ws, headers = tenant_over_http(api_server)
    base = f"{api_server}/v1/workspaces/{ws}"
    conn = httpx.post(
        f"{base}/connections",
        json={
            "provider": "testprovider",
            "external_account_id": "acct-http",
            "credentials": {"access_token": "tp-valid-token"},
            "config": {"base_url": sim.url},
            "backfill": False,
        },
        headers=headers,
    ).json()
    sync = httpx.post(f"{base}/connections/{conn['id']}/sync", json={"mode": "realtime"}, headers=headers)
    assert sync.status_code == 202 and sync.json()["status"] == "enqueued"
    worker_process()
    deadline = time.monotonic() + 60
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = httpx.get(f"{base}/jobs/{sync.json()['job_id']}", headers=headers).json()
        if job["status"] in {"complete", "failed"}:
            break
        time.sleep(0.2)
    assert job["status"] == "complete", job
    today = datetime.now(UTC).date()
    metrics = httpx.get(
        f"{base}/connections/{conn['id']}/metrics",
        params={"start": (today - timedelta(days=1)).isoformat(), "end": today.isoformat()},
        headers=headers,
    ).json()
    assert [as_numbers(r) for r in metrics["items"]] == [
        truth("acct-http", today - timedelta(days=1)),
        truth("acct-http", today),
    ]
    missing = httpx.get(f"{base}/connections/{uuid.uuid4()}", headers={**headers, "X-Request-ID": "abc-1"})
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "code": "connection_not_found",
        "message": "connection not found",
        "request_id": "abc-1",
    }


def test_openapi_property_run_finds_no_server_error_or_schema_break(api_server: str) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

    ws, headers = tenant_over_http(api_server)
    schema = schemathesis.openapi.from_url(f"{api_server}/openapi.json")
    checks = [not_a_server_error, response_schema_conformance, status_code_conformance]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 18
    for operation, mode in itertools.product(operations, GenerationMode):
        # Negative cases (invalid input) must be refused with a 4xx, never a 500.
        mode_checks = checks if mode is GenerationMode.POSITIVE else [not_a_server_error]

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=6,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            if "workspace_id" in (case.path_parameters or {}):
                case.path_parameters["workspace_id"] = ws  # reach the handlers, not only the tenancy check
            auth = OPERATOR if case.path == "/v1/workspaces" else headers
            response = case.call(base_url=api_server, headers=auth)
            if response.status_code == 502:
                # A generated base_url the provider cannot reach: a documented upstream failure.
                assert response.json()["error"]["code"] == "provider_unavailable"
                case.validate_response(response, checks=mode_checks[1:])
                return
            case.validate_response(response, checks=mode_checks)

        try:
            check()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # nothing to make invalid (e.g. /v1/health)
