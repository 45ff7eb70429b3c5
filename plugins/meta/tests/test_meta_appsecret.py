"""Apps with "Require App Secret": through the worker, syncs fail with one clear message without
METRICX_META_APP_SECRET (or with a wrong one) and succeed with it; the secret and proof never leak."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import httpx
import pytest
from metricx_meta import MetaSettings
from metricx_meta.simulator import DEFAULT_TOKEN
from test_meta_worker_e2e import connect, connection, meta_sim  # noqa: F401  (fixture)

from core.testing.harness import enqueue_sync_job
from core.testing.plugin import plugin_environment

SECRET = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def sim_env(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue("meta_sim")


def test_app_secret_is_a_secret_and_never_printed() -> None:
    settings = MetaSettings(app_secret=SECRET)  # type: ignore[arg-type]
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())


async def test_syncs_need_the_app_secret_when_the_app_requires_it(
    sim_env: Any, run_worker: Any, redis_client: Any, metricx_env: Any
) -> None:
    _, url, env = sim_env
    httpx.post(f"{url}/_sim/config", json={"app_secret": SECRET}).raise_for_status()
    ws, conn = await connect("2003")

    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    await run_worker()
    row = await connection(conn)
    assert row.sync_status != "idle" and row.total_syncs_attempted == 1  # no retries: config, not transient
    assert row.last_error_kind == "config"
    assert "requires an appsecret_proof (set METRICX_META_APP_SECRET" in row.last_sync_error
    assert "REDACTED" not in row.last_sync_error

    with plugin_environment(
        {**env, "METRICX_META_APP_SECRET": "not-the-secret"}, redis_url=metricx_env.redis_url
    ):
        await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
        await run_worker()
    row = await connection(conn)
    assert row.last_error_kind == "config" and "is not the token's app's secret" in row.last_sync_error
    assert "not-the-secret" not in row.last_sync_error

    with plugin_environment({**env, "METRICX_META_APP_SECRET": SECRET}, redis_url=metricx_env.redis_url):
        await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
        await run_worker()
    row = await connection(conn)
    assert row.sync_status == "idle" and row.total_syncs_succeeded == 1, row.last_sync_error
    proof = hmac.new(SECRET.encode(), DEFAULT_TOKEN.encode(), hashlib.sha256).hexdigest()
    log = httpx.get(f"{url}/_sim/requests").json()
    assert proof in str(log)  # the calls carried HMAC-SHA256(app secret, token)
