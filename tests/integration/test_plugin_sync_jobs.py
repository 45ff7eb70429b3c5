"""A plugin sync job declared with ``SyncJobSpec``: the engine gives it runs, status, retries and deferrals.

The job's work uses only ``core``'s public names and talks to the test provider's
simulator over real HTTP; a real arq worker runs it next to the core's jobs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from core import SyncContext, SyncJobSpec, SyncMode, SyncWindow, enqueue_plugin_sync
from tests.conftest import fetch_all, fetch_one

SEEN: list[dict[str, Any]] = []


async def report_work(sctx: SyncContext) -> None:
    """Read the account and today's metrics through the provider; count rows; report progress."""
    provider, pctx = sctx.provider, sctx.provider_context
    await sctx.validate_credentials()
    info = await provider.fetch_account(pctx, sctx.account, sctx.credentials)
    await sctx.update_account(name=info.name, timezone=info.timezone, currency=info.currency)
    today = datetime.now(UTC).date()
    window = SyncWindow(SyncMode.realtime, today, today, sctx.account.timezone)
    await sctx.progress(done=0, total=1)
    async for batch in provider.fetch_metrics(pctx, sctx.account, sctx.credentials, window):
        sctx.add_rows(len(batch))
    await sctx.progress(done=1)
    SEEN.append({"try": sctx.job_try, "options": dict(sctx.options), "account": sctx.account})


REPORT = SyncJobSpec(
    name="testprovider.report",
    provider="testprovider",
    label="report",
    work=report_work,
    job_id_prefix="tpreport",
    arguments=("depth",),
)


@pytest.fixture
def plugin_worker(run_worker: Any) -> Any:
    """``run_worker`` with the core's jobs plus the report job."""
    from arq.worker import func

    from core.worker import WorkerSettings

    spec = REPORT.job_spec()
    functions = [*WorkerSettings.functions, func(spec.function, name=spec.name)]
    SEEN.clear()

    async def run(**kwargs: Any) -> Any:
        return await run_worker(functions=functions, **kwargs)

    return run


RUNS = (
    "SELECT try_number, status, mode, rows_written, slices_done, slices_total, api_calls, job_id "
    "FROM sync_runs WHERE connection_id = :c ORDER BY started_at, try_number"
)
CONN = "SELECT * FROM connections WHERE id = :c"


async def test_plugin_job_gets_runs_status_and_retries(
    make_connection: Any, sim: Any, redis_client: Any, plugin_worker: Any
) -> None:
    ws, conn = await make_connection()
    sim.control(transient=2, currency="EUR")  # two 503s on the metrics endpoint, then fine
    result = await enqueue_plugin_sync(REPORT, str(conn), str(ws), options={"depth": 2}, redis=redis_client)
    assert result["status"] == "enqueued" and result["job_id"].startswith(f"tpreport:{conn}:")
    again = await enqueue_plugin_sync(REPORT, str(conn), str(ws), redis=redis_client)
    assert again == {"job_id": result["job_id"], "status": "already_queued"}

    await plugin_worker()
    runs = await fetch_all(RUNS, c=conn)
    # The 503s are the simulator's (another test's leftover job may meet one of them): at least one
    # try is retried by the engine, and the last one completes.
    tries = len(runs)
    assert 2 <= tries <= 3
    assert [(r.try_number, r.status, r.mode) for r in runs] == [
        *[(n, "retrying", "report") for n in range(1, tries)],
        (tries, "complete", "report"),
    ]
    assert {r.job_id for r in runs} == {result["job_id"]}
    done = runs[-1]
    assert done.rows_written == 6 and (done.slices_done, done.slices_total) == (1, 1) and done.api_calls >= 2
    row = await fetch_one(CONN, c=conn)
    assert row.sync_status == "idle" and row.last_sync_error is None
    assert (row.total_syncs_attempted, row.total_syncs_succeeded) == (tries, 1)
    assert row.currency == "EUR"  # the account facts the job reported were stored
    assert [s["try"] for s in SEEN] == [tries] and SEEN[0]["options"] == {"depth": 2}
    assert SEEN[0]["account"].connection_id == str(conn)


async def test_plugin_job_is_deferred_when_rate_limited(
    make_connection: Any, sim: Any, redis_client: Any, plugin_worker: Any
) -> None:
    ws, conn = await make_connection()
    sim.control(rate_limit_s=120)
    first = await enqueue_plugin_sync(REPORT, str(conn), str(ws), redis=redis_client)
    await plugin_worker()
    runs = await fetch_all(RUNS, c=conn)
    assert [(r.try_number, r.status) for r in runs] == [(1, "deferred")]
    row = await fetch_one(CONN, c=conn)
    assert row.sync_status == "rate_limited" and row.rate_limited_until is not None
    assert row.last_error_kind == "rate_limited"
    # The engine re-queued the same kind of job after the throttle (not an ad sync).
    queued = [k.decode() for k in await redis_client.keys(f"arq:job:tpreport:{conn}:*")]
    assert len(queued) == 1 and queued[0] != f"arq:job:{first['job_id']}"
    await redis_client.delete(*queued)


async def test_plugin_job_refuses_another_providers_connection(
    make_connection: Any, redis_client: Any, run_worker: Any
) -> None:
    from dataclasses import replace

    from arq.worker import func

    from core.worker import WorkerSettings

    shop_only = replace(REPORT, name="testprovider.shop_report", provider="shopify")
    spec = shop_only.job_spec()
    ws, conn = await make_connection()
    result = await enqueue_plugin_sync(shop_only, str(conn), str(ws), redis=redis_client)
    await run_worker(functions=[*WorkerSettings.functions, func(spec.function, name=spec.name)])
    runs = await fetch_all(RUNS, c=conn)
    assert [(r.status, r.job_id) for r in runs] == [("failed", result["job_id"])]
    row = await fetch_one(CONN, c=conn)
    assert row.sync_status == "error" and "needs a shopify connection" in row.last_sync_error


async def test_plugin_job_with_a_dead_token_needs_reconnecting(
    make_connection: Any, redis_client: Any, plugin_worker: Any
) -> None:
    ws, conn = await make_connection(token="tp-revoked-token")
    await enqueue_plugin_sync(REPORT, str(conn), str(ws), redis=redis_client)
    await plugin_worker()
    runs = await fetch_all(RUNS, c=conn)
    assert [(r.try_number, r.status) for r in runs] == [(1, "failed")]  # never retried
    row = await fetch_one(CONN, c=conn)
    assert row.sync_status == "reconnect_required" and row.last_error_kind == "auth"
    assert "tp-revoked-token" not in row.last_sync_error
    assert SEEN == []
