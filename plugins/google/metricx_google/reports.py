"""GAQL queries the provider runs and the conversion of their rows into core records.

Levels: ``campaign`` (the ``campaign`` resource: every campaign type, Performance Max included, so
it is the level that covers all spend), ``ad_group`` and ``ad``. An ad is keyed by
``{ad_group_id}~{ad_id}`` (Google's own ``adGroupAds`` key: an ad id is unique only within its ad
group). Metrics take two queries per slice: ``campaign`` and ``ad_group_ad``; the ad-group level is
the sum of its ads' rows (one query serving two levels).

Money is exact: ``cost_micros`` is an int64 string turned into
``Decimal(micros).scaleb(-6)``; ``conversions`` / ``conversions_value`` arrive
as JSON doubles and go through ``repr`` so ``3.47`` stays ``Decimal("3.47")``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from core import EntityRecord, MetricRecord, PayloadError

Row = dict[str, Any]

LEVELS = ("campaign", "ad_group", "ad")
_METRICS = (
    "metrics.impressions, metrics.clicks, metrics.cost_micros, metrics.conversions, metrics.conversions_value"
)

CUSTOMER_QUERY = (
    "SELECT customer.id, customer.descriptive_name, customer.currency_code, customer.time_zone, "
    "customer.manager, customer.status FROM customer"
)
# customer_client returns the manager's whole hierarchy (itself at level 0, clients of sub-managers
# at 2 and below; connect discovery reads all of it): level <= 1 keeps the manager and its direct
# children (https://developers.google.com/google-ads/api/docs/account-management/get-account-hierarchy).
HIERARCHY_QUERY = (
    "SELECT customer_client.id, customer_client.client_customer, customer_client.descriptive_name, "
    "customer_client.manager, "
    "customer_client.status, customer_client.time_zone, customer_client.currency_code, "
    "customer_client.level, customer_client.hidden FROM customer_client"
)
CHILDREN_QUERY = f"{HIERARCHY_QUERY} WHERE customer_client.level <= 1"
ENTITY_QUERIES = {
    "campaign": "SELECT campaign.id, campaign.name, campaign.status, campaign.advertising_channel_type "
    "FROM campaign",
    "ad_group": "SELECT ad_group.id, ad_group.name, ad_group.status, campaign.id FROM ad_group",
    "ad": "SELECT ad_group_ad.ad.id, ad_group_ad.ad.name, ad_group_ad.ad.type, ad_group_ad.status, "
    "ad_group.id FROM ad_group_ad",
}
_METRIC_SELECT = {
    "campaign": ("campaign.id", "campaign"),
    "ad_group": ("ad_group.id, campaign.id", "ad_group"),
    "ad": ("ad_group_ad.ad.id, ad_group.id, campaign.id", "ad_group_ad"),
}
#: The metric queries of one slice: the level each reads (the ad rows also give the ad-group level).
METRIC_LEVELS = ("campaign", "ad")


def metrics_query(level: str, start: date, end: date) -> str:
    """Daily metrics of every entity at ``level`` for the inclusive local-day range."""
    ids, resource = _METRIC_SELECT[level]
    return (
        f"SELECT {ids}, segments.date, {_METRICS} FROM {resource} "
        f"WHERE segments.date BETWEEN '{start.isoformat()}' AND '{end.isoformat()}'"
    )


def _get(row: Row, *path: str) -> Any:
    node: Any = row
    for part in path:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _required(row: Row, *path: str) -> str:
    value = _get(row, *path)
    if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
        return str(value)
    raise PayloadError(
        f"Google Ads row field {'.'.join(path)!r} is missing or not an id: {str(value)[:40]!r}"
    )


def micros_to_decimal(value: object) -> Decimal:
    """``"1234567"`` micros -> ``Decimal("1.234567")``; anything but an integer is a PayloadError."""
    if value is None or value == "":
        return Decimal(0)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PayloadError(f"Google Ads cost_micros must be an integer, got {str(value)[:40]!r}")
    try:
        micros = int(value)
    except ValueError:
        raise PayloadError(f"Google Ads cost_micros must be an integer, got {str(value)[:40]!r}") from None
    return Decimal(micros).scaleb(-6)


def double_to_decimal(value: object, name: str) -> Decimal:
    """A JSON double (or its string form) as the Decimal it prints as, never via binary float math."""
    if value is None or value == "":
        return Decimal(0)
    if isinstance(value, bool):
        raise PayloadError(f"Google Ads {name} must be a number, got a boolean")
    text = repr(value) if isinstance(value, float) else str(value)
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise PayloadError(f"Google Ads {name} must be a number, got {text[:40]!r}") from None
    if not number.is_finite():
        raise PayloadError(f"Google Ads {name} must be finite, got {text[:40]!r}")
    return number


@dataclass(frozen=True, slots=True)
class _LevelShape:
    id_path: tuple[str, ...]
    parent_level: str | None
    parent_path: tuple[str, ...] | None


_SHAPES = {
    "campaign": _LevelShape(("campaign", "id"), None, None),
    "ad_group": _LevelShape(("adGroup", "id"), "campaign", ("campaign", "id")),
    "ad": _LevelShape(("adGroupAd", "ad", "id"), "ad_group", ("adGroup", "id")),
}


def _entity_fields(level: str, row: Row) -> tuple[str | None, str | None]:
    if level == "campaign":
        return _get(row, "campaign", "name"), _get(row, "campaign", "status")
    if level == "ad_group":
        return _get(row, "adGroup", "name"), _get(row, "adGroup", "status")
    return _get(row, "adGroupAd", "ad", "name"), _get(row, "adGroupAd", "status")


def external_id(level: str, row: Row) -> str:
    """The entity's key at ``level``: its id, or for an ad ``{ad_group_id}~{ad_id}``."""
    own = _required(row, *_SHAPES[level].id_path)
    return f"{_required(row, 'adGroup', 'id')}~{own}" if level == "ad" else own


def entity_record(level: str, row: Row) -> EntityRecord:
    """One entity row (campaign / ad_group / ad_group_ad query) as an EntityRecord with its parent link."""
    shape = _SHAPES[level]
    name, status = _entity_fields(level, row)
    return EntityRecord(
        level=level,
        external_id=external_id(level, row),
        name=name,
        status=status,
        parent_level=shape.parent_level,
        parent_external_id=_required(row, *shape.parent_path) if shape.parent_path else None,
        raw=row,
    )


def metric_record(level: str, row: Row, currency: str | None) -> MetricRecord:
    """One ``segments.date`` metrics row as a validated MetricRecord."""
    metrics = _get(row, "metrics")
    if metrics is not None and not isinstance(metrics, dict):
        raise PayloadError("Google Ads row field 'metrics' is not an object")
    m: dict[str, Any] = metrics or {}
    return MetricRecord(
        level=level,
        entity_external_id=external_id(level, row),
        metrics_date=_get(row, "segments", "date"),
        spend=micros_to_decimal(m.get("costMicros")),
        impressions=m.get("impressions", 0),
        clicks=m.get("clicks", 0),
        conversions=double_to_decimal(m.get("conversions"), "conversions"),
        revenue=double_to_decimal(m.get("conversionsValue"), "conversions_value"),
        currency=currency,
    )


def add_to_ad_groups(sums: dict[tuple[str, Any], MetricRecord], ads: list[MetricRecord]) -> None:
    """Add a batch of ad rows (keys ``{ad_group_id}~{ad_id}``) to their ad group's day totals in ``sums``
    (one entry per ad group and day: memory does not grow with the number of ads)."""
    for r in ads:
        group = r.entity_external_id.split("~", 1)[0]
        key = (group, r.metrics_date)
        seen = sums.get(key)
        if seen is None:
            sums[key] = MetricRecord(
                level="ad_group",
                entity_external_id=group,
                metrics_date=r.metrics_date,
                spend=r.spend,
                impressions=r.impressions,
                clicks=r.clicks,
                conversions=r.conversions,
                revenue=r.revenue,
                currency=r.currency,
            )
            continue
        seen.spend += r.spend
        seen.impressions += r.impressions
        seen.clicks += r.clicks
        seen.conversions += r.conversions
        seen.revenue += r.revenue
