"""Insights and edge queries: parameter validation, filtering, rows and positional cursors."""

from __future__ import annotations

import base64
import calendar
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from metricx_meta.simulator.data import INACTIVE, Account, Entity, Numbers, currency_digits, totals
from metricx_meta.simulator.envelope import GraphAPIError, invalid_parameter

LEVELS = ("account", "campaign", "adset", "ad")
_COMMON = ("ACTIVE", "PAUSED", "DELETED", "ARCHIVED", "IN_PROCESS", "WITH_ISSUES")
VALID_STATUSES = {
    "campaign": frozenset(_COMMON),
    "adset": frozenset({*_COMMON, "CAMPAIGN_PAUSED"}),
    "ad": frozenset(
        {
            *_COMMON,
            "CAMPAIGN_PAUSED",
            "ADSET_PAUSED",
            "DISAPPROVED",
            "PENDING_REVIEW",
            "PREAPPROVED",
            "PENDING_BILLING_INFO",
        }
    ),
}
PURCHASE_TYPES = ("omni_purchase", "purchase", "offsite_conversion.fb_pixel_purchase")
REPORT_TIMES = frozenset({"impression", "conversion", "mixed"})
MAX_MONTHS_BACK = 37


@dataclass(frozen=True, slots=True)
class Filter:
    field: str
    operator: str
    value: Any


@dataclass(frozen=True, slots=True)
class InsightsQuery:
    """A validated insights request."""

    level: str
    since: date
    until: date
    daily: bool
    fields: tuple[str, ...] | None
    filters: tuple[Filter, ...]


def parse_filters(raw: str | None) -> tuple[Filter, ...]:
    if not raw:
        return ()
    try:
        items = json.loads(raw)
        return tuple(Filter(str(i["field"]), str(i["operator"]).upper(), i["value"]) for i in items)
    except (ValueError, TypeError, KeyError):
        raise invalid_parameter("Param filtering must be an array of {field, operator, value}") from None


def _subject(account: Account, entity: Entity, level: str) -> Entity | None:
    if level == entity.level:
        return entity
    return account.by_id.get({"campaign": entity.campaign_id, "adset": entity.adset_id}.get(level) or "")


def _check_statuses(level: str, values: list[str]) -> None:
    for value in values:
        if value not in VALID_STATUSES.get(level, frozenset()):
            raise invalid_parameter(
                f"Filtering field {level}.effective_status with operation in and value {value} "
                "is not supported"
            )


def _passes(account: Account, entity: Entity, flt: Filter, default_level: str) -> bool:
    prefix, _, name = flt.field.rpartition(".")
    level = prefix or default_level
    subject = _subject(account, entity, level)
    if subject is None or name not in ("effective_status", "id", "updated_time"):
        raise invalid_parameter(f"Filtering field {flt.field} is invalid")
    values = flt.value if isinstance(flt.value, list) else [flt.value]
    if name == "effective_status":
        _check_statuses(level, [str(v) for v in values])
    actual: Any = account.effective_status(subject) if name == "effective_status" else subject.id
    if name == "updated_time":
        actual = int(subject.updated.timestamp()) if subject.updated else 0
        return flt.operator == "GREATER_THAN" and actual > int(values[0])
    if flt.operator in ("IN", "EQUAL"):
        return actual in [str(v) for v in values]
    if flt.operator == "NOT_IN":
        return actual not in [str(v) for v in values]
    raise invalid_parameter(f"Filtering operator {flt.operator} is not supported for {flt.field}")


def select(account: Account, level: str, filters: tuple[Filter, ...], status_field: str) -> list[Entity]:
    """Entities of ``level`` passing ``filters``; deleted/archived ones only when a status filter asks."""
    asked = any(f.field == status_field for f in filters)
    chosen = []
    for entity in sorted(account.level(level), key=lambda e: e.id):
        if not asked and account.effective_status(entity) in INACTIVE:
            continue
        if all(_passes(account, entity, f, level) for f in filters):
            chosen.append(entity)
    return chosen


def months_back(day: date, months: int) -> date:
    year, month = divmod(day.year * 12 + day.month - 1 - months, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def _preset(preset: str, today: date) -> tuple[date, date]:
    if preset == "today":
        return today, today
    if preset == "yesterday":
        return today - timedelta(days=1), today - timedelta(days=1)
    if preset == "this_month":
        return today.replace(day=1), today
    if preset.startswith("last_") and preset.endswith("d") and preset[5:-1].isdigit():
        return today - timedelta(days=int(preset[5:-1])), today - timedelta(days=1)
    raise invalid_parameter(
        f"Param date_preset must be one of today, yesterday, this_month, last_Nd: {preset}"
    )


def _time_range(params: Mapping[str, str], today: date) -> tuple[date, date]:
    raw = params.get("time_range")
    if not raw:
        return _preset(params.get("date_preset", "last_30d"), today)
    try:
        value = json.loads(raw)
        return date.fromisoformat(value["since"]), date.fromisoformat(value["until"])
    except (ValueError, TypeError, KeyError):
        raise invalid_parameter(
            "Param time_range must be a JSON object {since, until} of YYYY-MM-DD"
        ) from None


def parse_insights(params: Mapping[str, str], now_local: datetime) -> InsightsQuery:
    """Validate an insights request against the account's clock, as Meta does."""
    level = params.get("level", "account")
    if level not in LEVELS:
        raise invalid_parameter(f"Param level must be one of {', '.join(LEVELS)}")
    report_time = params.get("action_report_time", "mixed")
    if report_time not in REPORT_TIMES:
        raise invalid_parameter("Param action_report_time must be one of impression, conversion, mixed")
    today = now_local.date()
    since, until = _time_range(params, today)
    if since > until:
        raise invalid_parameter("Param time_range: since must be on or before until")
    if until > today:
        raise invalid_parameter(
            f"Param time_range is invalid: time_ranges.end cannot be in the future "
            f"(it is {today.isoformat()} in the ad account's timezone {now_local.tzinfo})"
        )
    if since < months_back(today, MAX_MONTHS_BACK):
        raise GraphAPIError(
            3018, "(#3018) The start date of the time range cannot be beyond 37 months from the current date"
        )
    increment = params.get("time_increment", "all_days")
    if increment not in ("1", "all_days"):
        raise invalid_parameter("Param time_increment must be 1 or all_days in the simulator")
    fields = tuple(f for f in params.get("fields", "").split(",") if f) or None
    return InsightsQuery(
        level, since, until, increment == "1", fields, parse_filters(params.get("filtering"))
    )


def encode_cursor(*position: int) -> str:
    return base64.urlsafe_b64encode(":".join(map(str, position)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[int, int]:
    if not cursor:
        return 0, 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        first, second = text.split(":")
        return int(first), int(second)
    except (ValueError, UnicodeDecodeError):
        raise invalid_parameter("Invalid cursor: after") from None


def money(minor: int, currency: str) -> str:
    return str(Decimal(minor).scaleb(-currency_digits(currency)))


def purchase_counts(purchases: int) -> dict[str, int]:
    """Each purchase action type's count: they differ, as they do at Meta (omni_purchase counts every
    channel, ``purchase`` fewer, the pixel's own type fewer still), so a test can tell which is used."""
    return {
        "omni_purchase": purchases,
        "purchase": purchases - purchases // 4,
        "offsite_conversion.fb_pixel_purchase": purchases - purchases // 3,
    }


def _actions(account: Account, numbers: Numbers) -> dict[str, Any]:
    actions = [{"action_type": "link_click", "value": str(numbers.clicks)}] if numbers.clicks else []
    values = []
    if numbers.purchases:
        actions += [
            {"action_type": t, "value": str(n)} for t, n in purchase_counts(numbers.purchases).items()
        ]
        values = [
            {"action_type": t, "value": money(v, account.currency)}
            for t, v in purchase_counts(numbers.revenue).items()
        ]
    return {"actions": actions, "action_values": values}


def clicks_all(numbers: Numbers) -> int:
    """Meta's ``clicks`` ("Clicks (all)": link clicks plus likes, shares, profile clicks...)."""
    return numbers.clicks + numbers.impressions // 50


def insights_row(
    account: Account, entity: Entity, numbers: Numbers, start: date, stop: date
) -> dict[str, Any]:
    """One row as Meta sends it: every number a string, empty action lists left out."""
    row: dict[str, Any] = {"account_id": account.id, "account_name": account.name}
    row["account_currency"] = account.currency
    for level in ("campaign", "adset", "ad"):
        subject = _subject(account, entity, level) if entity.level != "account" else None
        if subject is not None:
            row[f"{level}_id"], row[f"{level}_name"] = subject.id, subject.name
    row |= {
        "impressions": str(numbers.impressions),
        "clicks": str(clicks_all(numbers)),
        "inline_link_clicks": str(numbers.clicks),
        "spend": money(numbers.spend, account.currency),
        "reach": str(numbers.impressions * 7 // 10),
    }
    row |= {key: value for key, value in _actions(account, numbers).items() if value}
    return row | {"date_start": start.isoformat(), "date_stop": stop.isoformat()}


def _project(row: dict[str, Any], fields: tuple[str, ...] | None) -> dict[str, Any]:
    if fields is None:
        return row
    return {k: v for k, v in row.items() if k in fields or k in ("date_start", "date_stop")}


def iter_rows(
    account: Account, query: InsightsQuery, now_local: datetime, start: tuple[int, int]
) -> Iterator[tuple[tuple[int, int], dict[str, Any]]]:
    """(position, row) from ``start`` on, ordered by day then entity id; no row without delivery."""
    entities = select(account, query.level, query.filters, f"{query.level}.effective_status")
    days = (query.until - query.since).days + 1
    groups = (
        [(query.since + timedelta(days=i),) * 2 for i in range(days)]
        if query.daily
        else [(query.since, query.until)]
    )
    for group_index in range(start[0], len(groups)):
        first, last = groups[group_index]
        for entity_index in range(start[1] if group_index == start[0] else 0, len(entities)):
            entity = entities[entity_index]
            numbers = _sum_days(account, entity, first, last, now_local)
            if numbers is not None:
                row = insights_row(account, entity, numbers, first, last)
                yield (group_index, entity_index), _project(row, query.fields)


def _sum_days(
    account: Account, entity: Entity, first: date, last: date, now_local: datetime
) -> Numbers | None:
    total: Numbers | None = None
    for offset in range((last - first).days + 1):
        numbers = totals(account, entity, first + timedelta(days=offset), now_local)
        if numbers is not None:
            total = numbers if total is None else total + numbers
    return total
