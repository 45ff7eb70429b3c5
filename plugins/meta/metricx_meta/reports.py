"""Async report runs: POST insights, poll the run with backoff, read its pages; split what fails.

One run per slice and level (a backfill's 7-day slices; a whole attribution window at once). A run
that fails is retried once (``RUN_ATTEMPTS``) when its cause may pass, then split, as Meta advises
and production connectors do: by object first (account -> each campaign -> each ad set, never finer
than the report's level), then the finest object's days in halves. A single object-day that still
fails gives up with a :class:`ReportRunRejected` naming it: no endless retries. A run that stalls
or runs too long (Meta is slow) is split by days only and ends as a transient error. From v25.0 a failed
run says why (``error_code`` / ``error_subcode`` / ``error_message``): a permanent cause (invalid
breakdowns or metrics, permissions) is raised at once, an app throttle (4/1504022) as RateLimited.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import structlog

from core import MetricRecord, MetricxError, TransientError
from metricx_meta.client import MetaClient
from metricx_meta.entities import status_filter
from metricx_meta.errors import (
    THROTTLE_CODES,
    GraphError,
    ReduceDataError,
    ReportRunFailed,
    ReportRunRejected,
    map_graph_error,
)
from metricx_meta.insights import halves, insights_params, to_metrics

log = structlog.get_logger(__name__)

RUN_ATTEMPTS = 2
_DONE = "Job Completed"
_FAILED = frozenset({"Job Failed", "Job Skipped"})
# Failures a smaller report avoids (too much data, timeouts) or a rerun may pass (report failed,
# intermittent): from https://developers.facebook.com/documentation/ads-commerce/marketing-api/insights/error-codes
SPLIT_SUBCODES = frozenset({1487534, 1504018, 1504038, 2490547, 1504043, 1504044})
# Failures no split or rerun fixes (invalid breakdowns, invalid custom metrics).
PERMANENT_SUBCODES = frozenset({1504041, 1504042})
# Object levels from broad to narrow; a report of ``level`` splits down to objects no finer than it.
_OBJECTS = ("account", "campaign", "adset")
_DEPTH = {"account": 0, "campaign": 1, "adset": 2, "ad": 3}


@dataclass(frozen=True, slots=True)
class Scope:
    """What one run covers: the whole account, or one campaign or ad set of it."""

    level: str = "account"
    object_id: str | None = None

    def describe(self, account_id: str) -> str:
        return f"account {account_id}" if self.object_id is None else f"{self.level} {self.object_id}"


def slices(since: date, until: date, days: int) -> Iterator[tuple[date, date]]:
    """Inclusive slices of at most ``days`` days, newest first."""
    end = until
    while end >= since:
        start = max(since, end - timedelta(days=days - 1))
        yield start, end
        end = start - timedelta(days=1)


async def fetch_backfill(
    client: MetaClient,
    account_id: str,
    levels: tuple[str, ...],
    since: date,
    until: date,
    slice_days: int | None = None,
) -> AsyncIterator[list[MetricRecord]]:
    """Yield page batches of every level for ``since..until``, one report run per slice and level."""
    for start, end in slices(since, until, slice_days or client.settings.backfill_slice_days):
        for level in levels:
            async for batch in fetch_report(client, account_id, level, start, end):
                yield batch


async def fetch_report(
    client: MetaClient, account_id: str, level: str, since: date, until: date, scope: Scope = Scope()
) -> AsyncIterator[list[MetricRecord]]:
    """Yield the rows of ``level`` for ``scope`` and ``since..until``; split the run when it fails."""
    run_id, failure = await _completed_run(client, account_id, level, since, until, scope)
    if run_id is not None:
        async for page in client.pages(f"{run_id}/insights", {"limit": client.settings.page_size}):
            yield to_metrics(level, page)
        return
    assert failure is not None
    narrower = None if failure.slow else _next_object_level(scope, level)
    if narrower is not None:
        children = await child_ids(client, account_id, narrower, scope)
        log.info(
            "meta_split_report_by_object",
            level=level,
            scope=scope.describe(account_id),
            into=f"{len(children)} {narrower}s",
        )
        for child in children:
            async for batch in fetch_report(client, account_id, level, since, until, Scope(narrower, child)):
                yield batch
        return
    if since < until:
        log.info("meta_split_report_by_days", level=level, scope=scope.describe(account_id))
        for part_since, part_until in halves(since, until):
            async for batch in fetch_report(client, account_id, level, part_since, part_until, scope):
                yield batch
        return
    if failure.slow:
        raise failure  # Meta is slow: transient, the engine retries the sync later
    raise ReportRunRejected(
        f"Meta could not build the {level} report of {scope.describe(account_id)} for {since.isoformat()} "
        f"even alone ({failure.message}); giving up on that day"
    )


def _next_object_level(scope: Scope, level: str) -> str | None:
    index = _OBJECTS.index(scope.level)
    if index + 1 < len(_OBJECTS) and _DEPTH[_OBJECTS[index + 1]] <= _DEPTH[level]:
        return _OBJECTS[index + 1]
    return None


async def child_ids(client: MetaClient, account_id: str, level: str, parent: Scope) -> list[str]:
    """Ids of the account's campaigns, or of one campaign's ad sets (every status)."""
    edge = {"campaign": "campaigns", "adset": "adsets"}[level]
    filters = json.loads(status_filter("effective_status", level))
    if parent.object_id is not None:
        filters.append({"field": f"{parent.level}.id", "operator": "IN", "value": [parent.object_id]})
    params: dict[str, str | int] = {
        "fields": "id",
        "filtering": json.dumps(filters),
        "limit": client.settings.page_size,
    }
    ids: list[str] = []
    async for page in client.pages(f"act_{account_id}/{edge}", params):
        ids += [str(row["id"]) for row in page if row.get("id")]
    return ids


async def _completed_run(
    client: MetaClient, account_id: str, level: str, since: date, until: date, scope: Scope
) -> tuple[str | None, ReportRunFailed | None]:
    """(run id, None) of a completed run, or (None, the last failure) when the run should be split."""
    failure: ReportRunFailed | None = None
    for attempt in range(1, RUN_ATTEMPTS + 1):
        try:
            return await _run_report(client, account_id, level, since, until, scope), None
        except ReportRunFailed as exc:
            failure = exc
            log.warning(
                "meta_report_run_failed",
                level=level,
                scope=scope.describe(account_id),
                since=since.isoformat(),
                until=until.isoformat(),
                attempt=attempt,
                reason=exc.message,
            )
            if exc.split_now:
                break
        except ReduceDataError as exc:  # Meta refused to start the run: too much data asked for
            failure = ReportRunFailed(exc.message)
            failure.split_now = True
            log.warning("meta_report_run_refused", level=level, scope=scope.describe(account_id))
            break
    return None, failure


def _params(client: MetaClient, level: str, since: date, until: date, scope: Scope) -> dict[str, Any]:
    params: dict[str, Any] = insights_params(client, level, since, until)
    if scope.object_id is not None:
        filters = json.loads(str(params["filtering"]))
        filters.append({"field": f"{scope.level}.id", "operator": "IN", "value": [scope.object_id]})
        params["filtering"] = json.dumps(filters)
    return params


async def _run_report(
    client: MetaClient, account_id: str, level: str, since: date, until: date, scope: Scope
) -> str:
    body = await client.post(f"act_{account_id}/insights", _params(client, level, since, until, scope))
    run_id = body.get("report_run_id")
    if not run_id:
        raise TransientError("Meta API did not return a report_run_id for an async insights request")
    await _wait_for(client, str(run_id))
    return str(run_id)


def run_failure(body: dict[str, Any], *, default_retry_s: float = 300.0) -> MetricxError:
    """What a failed run's status object means: v25's ``error_code`` fields decide, when present."""
    status = str(body.get("async_status"))
    code = body.get("error_code")
    if code in (None, "", 0):
        return ReportRunFailed(f"report run ended with {status!r}")
    error = GraphError.from_fields(
        {
            "code": code,
            "error_subcode": body.get("error_subcode"),
            "message": body.get("error_message"),
            "error_user_msg": body.get("error_user_msg"),
        }
    )
    text = f"report run ended with {status!r}: {error.describe()}"
    if error.subcode in PERMANENT_SUBCODES:
        return ReportRunRejected(text)
    if error.code in THROTTLE_CODES:
        return map_graph_error(400, error, retry_after_s=None, default_retry_s=default_retry_s)
    if error.subcode in SPLIT_SUBCODES or error.code in (-2, 1, 2):
        failed = ReportRunFailed(text)
        failed.split_now = error.subcode in (1487534, 1504018, 1504038)  # rerunning as is cannot help
        return failed
    mapped = map_graph_error(400, error, retry_after_s=None, default_retry_s=default_retry_s)
    return ReportRunFailed(text) if isinstance(mapped, TransientError) else mapped


async def _wait_for(client: MetaClient, run_id: str) -> None:
    settings = client.settings
    started = time.monotonic()
    for poll in itertools.count():
        # Small reports finish in seconds, big ones in minutes; every poll counts against the quota.
        await asyncio.sleep(min(settings.async_poll_interval_s, settings.async_first_poll_s * 2**poll))
        body = await client.get(run_id, {})
        status = str(body.get("async_status"))
        percent = float(body.get("async_percent_completion") or 0)
        if status == _DONE:
            return
        if status in _FAILED:
            raise run_failure(body, default_retry_s=settings.throttle_default_retry_s)
        elapsed = time.monotonic() - started
        if percent <= 0 and elapsed >= settings.async_stuck_timeout_s:
            raise _slow(f"report run stuck at 0% for {elapsed:.0f}s")
        if elapsed >= settings.async_max_wait_s:
            raise _slow(f"report run unfinished after {elapsed:.0f}s ({percent:.0f}%)")


def _slow(message: str) -> ReportRunFailed:
    failed = ReportRunFailed(message)
    failed.slow = True
    return failed
