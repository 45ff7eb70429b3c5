"""Workspace totals across all connections: ``GET /v1/workspaces/{ws}/metrics/summary``."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from core.api.csv import CSV_RESPONSE, AcceptHeader, FormatQuery, csv_response, models_csv, wants_csv
from core.api.deps import SessionDep, WorkspaceDep
from core.api.errors import ApiError
from core.api.summary_schemas import WorkspaceSummaryPublic
from core.services.summary import default_range, rates_from_settings, workspace_summary

router = APIRouter(prefix="/workspaces/{workspace_id}/metrics", tags=["data"])

MAX_RANGE_DAYS = 366
DAY_COLUMNS = (
    "metrics_date",
    "provider",
    "currency",
    "spend",
    "impressions",
    "clicks",
    "conversions",
    "revenue",
)


def summary_range(since: date | None, until: date | None) -> tuple[date, date]:
    """The checked range: default the 7 days ending today (UTC), at most :data:`MAX_RANGE_DAYS`."""
    until = until or default_range()[1]
    try:
        since = since or default_range(until)[0]
    except OverflowError:
        raise ApiError(422, "invalid_range", "until is too early for a default since; give since") from None
    if since > until:
        raise ApiError(422, "invalid_range", "since must be on or before until")
    if (until - since).days >= MAX_RANGE_DAYS:
        raise ApiError(422, "invalid_range", f"the range may span at most {MAX_RANGE_DAYS} days")
    return since, until


@router.get("/summary", response_model=WorkspaceSummaryPublic, responses=CSV_RESPONSE)
async def metrics_summary(
    workspace: WorkspaceDep,
    session: SessionDep,
    since: Annotated[date | None, Query(description="First day (default: 6 days before until).")] = None,
    until: Annotated[date | None, Query(description="Last day (default: today, UTC).")] = None,
    fmt: FormatQuery = None,
    accept: AcceptHeader = None,
) -> WorkspaceSummaryPublic | Response:
    """Spend, impressions, clicks, conversions and revenue per day and provider across every connection,
    each at its provider's primary level (never summed across levels); store revenue beside ad spend,
    ROAS per platform, MER = store revenue / ad spend; totals per currency, converted only with
    operator-supplied rates. Days are each account's own days. As CSV: the per-day rows."""
    since, until = summary_range(since, until)
    try:
        rates = rates_from_settings()
    except ValueError as exc:
        raise ApiError(500, "bad_currency_rates", f"METRICX_CURRENCY_RATES: {exc}") from None
    summary = await workspace_summary(session, workspace.id, since, until, rates=rates)
    public = WorkspaceSummaryPublic.of(summary)
    if wants_csv(fmt, accept):
        body = models_csv(public.days, DAY_COLUMNS, workspace_id=workspace.id)
        return csv_response(body, f"summary-{workspace.id}-{since}-{until}.csv")
    return public
