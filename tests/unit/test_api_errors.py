"""Pure pieces of the API: job-id ownership parsing, provider error mapping, job outcomes."""

from __future__ import annotations

import uuid

from core.api.errors import provider_error
from core.api.routes.jobs import job_connection, job_outcome
from core.errors import AuthError, ConfigError, PayloadError, RateLimited, TransientError


def test_only_sync_job_ids_name_a_connection() -> None:
    conn = uuid.uuid4()
    assert job_connection(f"sync:{conn}:backfill:123") == conn
    assert job_connection(f"sync:{conn}:realtime:cron:scheduled_realtime_sync:1") == conn
    for other in ("cron:scheduled_compaction:1", "sync:nope:realtime:1", "sync", f"shopify:{conn}:x"):
        assert job_connection(other) is None


def test_provider_errors_map_to_stable_codes() -> None:
    cases = [
        (AuthError("token expired; reconnect"), 422, "invalid_credentials"),
        (ConfigError("bad account id"), 422, "invalid_config"),
        (TransientError("503"), 502, "provider_unavailable"),
        (PayloadError("bad field"), 422, "provider_error"),
    ]
    for exc, status, code in cases:
        mapped = provider_error(exc)
        assert (mapped.status_code, mapped.code) == (status, code)
    throttled = provider_error(RateLimited("slow down", 42))
    assert (throttled.status_code, throttled.headers) == (503, {"Retry-After": "42"})


def test_a_sync_that_returned_failed_is_a_failed_job() -> None:
    assert job_outcome(True, {"status": "complete", "rows": 3}) == (
        "complete",
        {"status": "complete", "rows": 3},
        None,
    )
    status, _, error = job_outcome(True, {"status": "failed", "error": "boom"})
    assert (status, error) == ("failed", "boom")
    assert job_outcome(False, "RuntimeError: x")[0] == "failed"
