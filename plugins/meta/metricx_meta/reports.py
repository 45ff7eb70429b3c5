"""Async report runs for backfills: POST insights, poll the run, read its pages.

As production connectors do: one run per day slice; a run stuck at 0%, not
finished in time, or ending in ``Job Failed`` / ``Job Skipped`` is retried
once, then its slice is split in halves (down to single days).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta

import structlog

from core import MetricRecord, TransientError
from metricx_meta.client import MetaClient
from metricx_meta.errors import ReportRunFailed
from metricx_meta.insights import halves, insights_params, to_metrics

log = structlog.get_logger(__name__)

RUN_ATTEMPTS = 2
_FIRST_POLL_S = 0.25
_DONE = "Job Completed"
_FAILED = frozenset({"Job Failed", "Job Skipped"})


def slices(since: date, until: date, days: int) -> Iterator[tuple[date, date]]:
    """Inclusive slices of at most ``days`` days, newest first."""
    end = until
    while end >= since:
        start = max(since, end - timedelta(days=days - 1))
        yield start, end
        end = start - timedelta(days=1)


async def fetch_backfill(
    client: MetaClient, account_id: str, levels: tuple[str, ...], since: date, until: date
) -> AsyncIterator[list[MetricRecord]]:
    """Yield page batches of every level for ``since..until``, one report run per slice and level."""
    for start, end in slices(since, until, client.settings.backfill_slice_days):
        for level in levels:
            async for batch in _fetch_slice(client, account_id, level, start, end):
                yield batch


async def _fetch_slice(
    client: MetaClient, account_id: str, level: str, since: date, until: date
) -> AsyncIterator[list[MetricRecord]]:
    run_id = await _completed_run(client, account_id, level, since, until)
    if run_id is None:
        for part_since, part_until in halves(since, until):
            async for batch in _fetch_slice(client, account_id, level, part_since, part_until):
                yield batch
        return
    params = {"limit": client.settings.page_size}
    async for page in client.pages(f"{run_id}/insights", params):
        yield to_metrics(level, page)


async def _completed_run(
    client: MetaClient, account_id: str, level: str, since: date, until: date
) -> str | None:
    """The id of a completed run for the slice, or None when the slice should be split."""
    for attempt in range(1, RUN_ATTEMPTS + 1):
        try:
            return await _run_report(client, account_id, level, since, until)
        except ReportRunFailed as exc:
            log.warning(
                "meta_report_run_failed",
                level=level,
                since=since.isoformat(),
                until=until.isoformat(),
                attempt=attempt,
                reason=exc.message,
            )
            if attempt == RUN_ATTEMPTS and since >= until:
                raise
    return None


async def _run_report(client: MetaClient, account_id: str, level: str, since: date, until: date) -> str:
    params = insights_params(client, level, since, until)
    body = await client.post(f"act_{account_id}/insights", params)
    run_id = body.get("report_run_id")
    if not run_id:
        raise TransientError("Meta API did not return a report_run_id for an async insights request")
    await _wait_for(client, str(run_id))
    return str(run_id)


async def _wait_for(client: MetaClient, run_id: str) -> None:
    settings = client.settings
    started = time.monotonic()
    for poll in itertools.count():
        body = await client.get(run_id, {"fields": "id,async_status,async_percent_completion"})
        status = str(body.get("async_status"))
        percent = float(body.get("async_percent_completion") or 0)
        if status == _DONE:
            return
        if status in _FAILED:
            raise ReportRunFailed(f"report run ended with {status!r}")
        elapsed = time.monotonic() - started
        if percent <= 0 and elapsed >= settings.async_stuck_timeout_s:
            raise ReportRunFailed(f"report run stuck at 0% for {elapsed:.0f}s")
        if elapsed >= settings.async_max_wait_s:
            raise ReportRunFailed(f"report run unfinished after {elapsed:.0f}s ({percent:.0f}%)")
        # Small reports finish in seconds: poll quickly first, then back off to the interval.
        await asyncio.sleep(min(settings.async_poll_interval_s, _FIRST_POLL_S * 2**poll))
