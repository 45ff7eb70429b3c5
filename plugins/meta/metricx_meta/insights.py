"""Insights: request parameters, row parsing and the synchronous (paged GET) fetch.

Rows carry every number as a string; they are passed to :class:`MetricRecord`
unparsed so a malformed value raises :class:`~core.errors.PayloadError`.
Purchases appear under several action types for the same conversion: one
canonical type is chosen, never a sum: ``omni_purchase`` (Ads Manager's "Purchases" column, every
channel: website, app, offline), else ``purchase``, else the pixel's own type.

``clicks`` is Meta's ``inline_link_clicks`` (Ads Manager's "Link clicks", the base of its CPC);
Meta's own ``clicks`` field is "Clicks (all)" (likes, shares, profile clicks too), read as
:func:`clicks_all`. ``action_report_time`` and ``use_unified_attribution_setting`` are not sent:
Meta ignores both since 2025-06-10 (insights use each ad set's attribution setting).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from datetime import date, timedelta
from typing import Any

import structlog

from core import MetricRecord
from metricx_meta.client import MetaClient
from metricx_meta.entities import status_filter
from metricx_meta.errors import ReduceDataError

log = structlog.get_logger(__name__)

PURCHASE_TYPES = ("omni_purchase", "purchase", "offsite_conversion.fb_pixel_purchase")
_ID_FIELDS = {
    "campaign": ("campaign_id", "campaign_name"),
    "adset": ("campaign_id", "adset_id", "adset_name"),
    "ad": ("campaign_id", "adset_id", "ad_id", "ad_name"),
}
_METRIC_FIELDS = (
    "account_currency",
    "impressions",
    "inline_link_clicks",
    "clicks",
    "spend",
    "actions",
    "action_values",
)


def insights_params(client: MetaClient, level: str, since: date, until: date) -> dict[str, str | int]:
    """Parameters of one insights request: daily rows of ``level`` for ``since..until`` (account days)."""
    settings = client.settings
    return {
        "level": level,
        "fields": ",".join((*_ID_FIELDS[level], *_METRIC_FIELDS)),
        "time_range": json.dumps({"since": since.isoformat(), "until": until.isoformat()}),
        "time_increment": 1,
        # Deleted and archived objects' rows are left out unless asked for.
        "filtering": status_filter(f"{level}.effective_status", level),
        "limit": settings.page_size,
    }


def _by_type(actions: Any) -> dict[str, Any]:
    if not isinstance(actions, list):
        return {}
    return {str(a.get("action_type")): a.get("value") for a in actions if isinstance(a, dict)}


def canonical_purchase(actions: Any, action_values: Any) -> tuple[Any, Any]:
    """(conversions, revenue) of the first purchase type present: omni_purchase, purchase, pixel."""
    counts, values = _by_type(actions), _by_type(action_values)
    for kind in PURCHASE_TYPES:
        if kind in counts or kind in values:
            return counts.get(kind), values.get(kind)
    return None, None


def to_metric(level: str, row: dict[str, Any]) -> MetricRecord:
    """One insights row as a MetricRecord (the record validates the raw strings)."""
    conversions, revenue = canonical_purchase(row.get("actions"), row.get("action_values"))
    return MetricRecord(
        level=level,
        entity_external_id=row.get(f"{level}_id"),  # type: ignore[arg-type]
        metrics_date=row.get("date_start"),  # type: ignore[arg-type]
        spend=row.get("spend"),  # type: ignore[arg-type]
        impressions=row.get("impressions"),  # type: ignore[arg-type]
        # Meta leaves out inline_link_clicks on rows without any: zero link clicks.
        clicks=row.get("inline_link_clicks", 0),
        conversions=conversions,
        revenue=revenue,
        currency=row.get("account_currency"),
        extra={"clicks_all": clicks_all(row)},
    )


def clicks_all(row: dict[str, Any]) -> int:
    """Meta's "Clicks (all)" of a row (the ``clicks`` field), 0 when absent."""
    return int(row.get("clicks") or 0)


def to_metrics(level: str, rows: Iterable[dict[str, Any]]) -> list[MetricRecord]:
    return [to_metric(level, row) for row in rows]


def halves(since: date, until: date) -> tuple[tuple[date, date], tuple[date, date]]:
    """Split an inclusive day range (of at least two days) in two."""
    middle = since + timedelta(days=(until - since).days // 2)
    return (since, middle), (middle + timedelta(days=1), until)


async def fetch_range(
    client: MetaClient, account_id: str, level: str, since: date, until: date
) -> AsyncIterator[list[MetricRecord]]:
    """Yield one batch per page of daily rows; split the range when Meta asks for less data.

    A split after some pages were yielded re-reads them: records are upserted, so
    that costs calls, not correctness.
    """
    params = insights_params(client, level, since, until)
    try:
        async for page in client.pages(f"act_{account_id}/insights", params):
            yield to_metrics(level, page)
    except ReduceDataError:
        if since >= until:
            raise
        log.info("meta_split_range", level=level, since=since.isoformat(), until=until.isoformat())
        for part_since, part_until in halves(since, until):
            async for batch in fetch_range(client, account_id, level, part_since, part_until):
                yield batch
