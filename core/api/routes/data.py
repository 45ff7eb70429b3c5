"""Synced data of a connection: entities, daily totals and today's intraday series.

Snapshots hold cumulative "day so far" totals, so a day's total is its latest
snapshot per entity (never a sum over snapshots). Days are the account's days,
money is in the account's currency.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.api.csv import CSV_RESPONSE, AcceptHeader, FormatQuery, csv_response, models_csv, wants_csv
from core.api.deps import ConnectionDep, PageDep, SessionDep
from core.api.errors import ApiError
from core.api.schemas import NO_NUL, EntityPublic, IntradayPoint, IntradaySeries, MetricRow, MetricsPage, Page
from core.coverage import unavailable_days
from core.db.models import Connection, Entity
from core.plugins import get_registry

router = APIRouter(prefix="/workspaces/{workspace_id}/connections/{connection_id}", tags=["data"])

MAX_RANGE_DAYS = 366
SUMS = (
    "sum(spend) AS spend, sum(impressions) AS impressions, sum(clicks) AS clicks, "
    "sum(conversions) AS conversions, sum(revenue) AS revenue"
)
LATEST = """
WITH latest AS (
  SELECT DISTINCT ON (s.entity_id, s.metrics_date)
         s.entity_id, s.metrics_date, s.spend, s.impressions, s.clicks, s.conversions, s.revenue, s.extra
  FROM metric_snapshots s JOIN entities e ON e.id = s.entity_id
  WHERE s.connection_id = :connection_id AND s.workspace_id = :workspace_id
    AND s.metrics_date BETWEEN :start AND :end AND e.level = :level
    AND (CAST(:entity_id AS uuid) IS NULL OR s.entity_id = CAST(:entity_id AS uuid))
  ORDER BY s.entity_id, s.metrics_date, s.captured_at DESC
)
"""
# A platform's extras summed per name over the day's entities (None when it reports none).
EXTRA_SUMS = (
    "(SELECT jsonb_object_agg(x.name, x.total) FROM (SELECT kv.key AS name, sum(kv.value::numeric) AS total "
    "FROM latest l2 CROSS JOIN LATERAL jsonb_each_text(l2.extra) kv "
    "WHERE l2.metrics_date = latest.metrics_date GROUP BY kv.key) x) AS extra"
)
BY_LEVEL = (
    LATEST
    + f"SELECT metrics_date, {SUMS}, {EXTRA_SUMS} FROM latest GROUP BY metrics_date ORDER BY metrics_date"
)
BY_ENTITY = (
    LATEST + "SELECT l.metrics_date, l.entity_id, e.external_id, e.name, l.spend, l.impressions, l.clicks, "
    "l.conversions, l.revenue, l.extra FROM latest l JOIN entities e ON e.id = l.entity_id "
    "ORDER BY l.metrics_date, e.external_id"
)
INTRADAY = f"""
SELECT s.captured_at, {SUMS.replace("sum(", "sum(s.")}
FROM metric_snapshots s JOIN entities e ON e.id = s.entity_id
WHERE s.connection_id = :connection_id AND s.workspace_id = :workspace_id
  AND s.metrics_date = :day AND e.level = :level
  AND (CAST(:entity_id AS uuid) IS NULL OR s.entity_id = CAST(:entity_id AS uuid))
GROUP BY s.captured_at ORDER BY s.captured_at
"""

Level = Annotated[
    str | None,
    Query(max_length=32, pattern=NO_NUL, description="Entity level (default: the provider's primary level)."),
]
EntityFilter = Annotated[uuid.UUID | None, Query(description="Only this entity.")]


def _level(connection: Connection, level: str | None) -> str:
    if level:
        return level
    provider = get_registry().providers.get(connection.provider)
    return provider.capabilities.default_level if provider else "ad"


def _today(connection: Connection) -> date:
    try:
        zone = ZoneInfo(connection.timezone or "UTC")
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    return datetime.now(zone).date()


def _params(connection: Connection, level: str, entity_id: uuid.UUID | None, **extra: Any) -> dict[str, Any]:
    return {
        "connection_id": connection.id,
        "workspace_id": connection.workspace_id,
        "level": level,
        "entity_id": str(entity_id) if entity_id else None,
        **extra,
    }


@router.get("/entities", response_model=Page[EntityPublic])
async def list_entities(
    connection: ConnectionDep,
    session: SessionDep,
    page: PageDep,
    level: Annotated[str | None, Query(max_length=32, pattern=NO_NUL)] = None,
    entity_status: Annotated[str | None, Query(alias="status", max_length=64, pattern=NO_NUL)] = None,
) -> Page[EntityPublic]:
    """The connection's campaigns / ad sets / ads (or the provider's levels), with their status."""
    where: list[Any] = [Entity.connection_id == connection.id, Entity.workspace_id == connection.workspace_id]
    if level:
        where.append(Entity.level == level)
    if entity_status:
        where.append(Entity.status == entity_status)
    total = await session.scalar(select(func.count()).select_from(Entity).where(*where)) or 0
    rows = await session.scalars(
        select(Entity)
        .where(*where)
        .order_by(Entity.level, Entity.external_id)
        .limit(page.limit)
        .offset(page.offset)
    )
    return page.page([EntityPublic.model_validate(e) for e in rows], total)


async def _count_rows(session: AsyncSession, params: dict[str, Any]) -> int:
    total = await session.scalar(text(LATEST + "SELECT count(*) FROM latest"), params)
    return int(total or 0)


METRIC_COLUMNS = ("spend", "impressions", "clicks", "conversions", "revenue")
ENTITY_COLUMNS = ("entity_id", "external_id", "name")


@router.get("/metrics", response_model=MetricsPage, responses=CSV_RESPONSE)
async def daily_metrics(
    connection: ConnectionDep,
    session: SessionDep,
    page: PageDep,
    start: Annotated[date | None, Query(description="First day (default: 6 days before end).")] = None,
    end: Annotated[date | None, Query(description="Last day (default: the account's today).")] = None,
    level: Level = None,
    group_by: Annotated[Literal["level", "entity"], Query()] = "level",
    entity_id: EntityFilter = None,
    fmt: FormatQuery = None,
    accept: AcceptHeader = None,
) -> MetricsPage | Response:
    """Daily totals over a date range (each day's latest snapshot), summed per level or per entity.

    As CSV (``?format=csv`` or ``Accept: text/csv``) every row of the query, without paging.
    """
    end = end or _today(connection)
    try:
        start = start or end - timedelta(days=6)
    except OverflowError:
        raise ApiError(422, "invalid_range", "end is too early for a default start; give start") from None
    if start > end:
        raise ApiError(422, "invalid_range", "start must be on or before end")
    if (end - start).days >= MAX_RANGE_DAYS:
        raise ApiError(422, "invalid_range", f"the range may span at most {MAX_RANGE_DAYS} days")
    chosen = _level(connection, level)
    params = _params(connection, chosen, entity_id, start=start, end=end)
    sql = BY_ENTITY if group_by == "entity" else BY_LEVEL
    if wants_csv(fmt, accept):
        rows = [MetricRow.model_validate(dict(r._mapping)) for r in await session.execute(text(sql), params)]
        columns = ("metrics_date", *(ENTITY_COLUMNS if group_by == "entity" else ()), *METRIC_COLUMNS)
        body = models_csv(
            rows, columns, connection_id=connection.id, level=chosen, currency=connection.currency
        )
        return csv_response(body, f"metrics-{connection.id}-{start}-{end}.csv")
    if group_by == "entity":
        total = await _count_rows(session, params)
    else:
        total = int(
            await session.scalar(text(LATEST + "SELECT count(DISTINCT metrics_date) FROM latest"), params)
            or 0
        )
    result = await session.execute(
        text(sql + " LIMIT :limit OFFSET :offset"), {**params, "limit": page.limit, "offset": page.offset}
    )
    rows = [MetricRow.model_validate(dict(r._mapping)) for r in result]
    base = page.page(rows, total)
    unavailable = await unavailable_days(session, connection.id, start, end)
    return MetricsPage(
        **base.model_dump(),
        connection_id=connection.id,
        level=chosen,
        currency=connection.currency,
        timezone=connection.timezone,
        start=start,
        end=end,
        unavailable_days=sorted(unavailable),
        unavailable_reason=unavailable[max(unavailable)] if unavailable else None,
    )


@router.get("/metrics/intraday", response_model=IntradaySeries, responses=CSV_RESPONSE)
async def intraday_metrics(
    connection: ConnectionDep,
    session: SessionDep,
    day: Annotated[
        date | None, Query(alias="date", description="The account's day (default: today).")
    ] = None,
    level: Level = None,
    entity_id: EntityFilter = None,
    fmt: FormatQuery = None,
    accept: AcceptHeader = None,
) -> IntradaySeries | Response:
    """The day-so-far totals at each snapshot time of one day (15-minute or hourly points); or CSV."""
    day = day or _today(connection)
    chosen = _level(connection, level)
    result = await session.execute(text(INTRADAY), _params(connection, chosen, entity_id, day=day))
    points = [IntradayPoint.model_validate(dict(r._mapping)) for r in result]
    if wants_csv(fmt, accept):
        body = models_csv(
            points,
            ("captured_at", *METRIC_COLUMNS),
            connection_id=connection.id,
            level=chosen,
            metrics_date=day,
            currency=connection.currency,
        )
        return csv_response(body, f"intraday-{connection.id}-{day}.csv")
    return IntradaySeries(
        connection_id=connection.id,
        level=chosen,
        metrics_date=day,
        currency=connection.currency,
        timezone=connection.timezone,
        points=points,
    )
