"""A minimal GAQL parser and the JSON row shape of Google Ads REST responses.

Supports ``SELECT f, ... FROM resource [WHERE cond AND ...] [ORDER BY ...] [LIMIT n]``
with conditions ``=``, ``!=``, ``>``, ``>=``, ``<``, ``<=``, ``IN (..)``,
``NOT IN (..)`` and ``BETWEEN 'a' AND 'b'``: enough for the provider's queries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

RESOURCES: dict[str, tuple[str, ...]] = {
    # resource -> resources whose fields it may select (itself first)
    "customer": ("customer",),
    "customer_client": ("customer_client", "customer"),
    "campaign": ("campaign", "customer"),
    "ad_group": ("ad_group", "campaign", "customer"),
    "ad_group_ad": ("ad_group_ad", "ad_group", "campaign", "customer"),
}
FIELDS: dict[str, tuple[str, ...]] = {
    "customer": ("id", "descriptive_name", "currency_code", "time_zone", "manager", "status"),
    "customer_client": (
        "id",
        "client_customer",
        "descriptive_name",
        "currency_code",
        "time_zone",
        "manager",
        "status",
        "level",
        "hidden",
    ),
    "campaign": ("id", "name", "status", "advertising_channel_type", "resource_name"),
    "ad_group": ("id", "name", "status", "campaign", "resource_name"),
    "ad_group_ad": ("status", "ad.id", "ad.name", "ad.type", "ad_group", "resource_name"),
    "metrics": ("impressions", "clicks", "cost_micros", "conversions", "conversions_value"),
    "segments": ("date",),
}
INT64_FIELDS = {"id", "impressions", "clicks", "cost_micros", "level"}

_QUERY = re.compile(
    r"^\s*SELECT\s+(?P<select>.+?)\s+FROM\s+(?P<resource>\w+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?(?:\s+ORDER\s+BY\s+(?P<order>.+?))?"
    r"(?:\s+LIMIT\s+(?P<limit>\d+))?(?:\s+PARAMETERS\s+.+)?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_COND = re.compile(
    r"^\s*(?P<field>[\w.]+)\s+(?:(?P<between>BETWEEN)\s+(?P<lo>'[^']*'|\S+)\s+AND\s+(?P<hi>'[^']*'|\S+)"
    r"|(?P<op>NOT\s+IN|IN|!=|>=|<=|=|>|<)\s*(?P<value>\(.*?\)|'[^']*'|\"[^\"]*\"|\S+))\s*$",
    re.IGNORECASE | re.DOTALL,
)
_SPLIT_AND = re.compile(r"\s+AND\s+", re.IGNORECASE)


class QueryError(Exception):
    """A query the simulator (and Google) refuses: ``code`` is the queryError enum value."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    op: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed GAQL query."""

    text: str
    fields: tuple[str, ...]
    resource: str
    conditions: tuple[Condition, ...] = field(default=())
    limit: int | None = None

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(f for f in self.fields if f.startswith("metrics."))

    @property
    def segmented_by_date(self) -> bool:
        return "segments.date" in self.fields

    def date_range(self) -> tuple[date, date] | None:
        """The finite ``segments.date`` range of the WHERE clause, or None."""
        lo: date | None = None
        hi: date | None = None
        for cond in self.conditions:
            if cond.field != "segments.date":
                continue
            try:
                parsed = [date.fromisoformat(v) for v in cond.values]
            except ValueError:
                raise QueryError("INVALID_VALUE_WITH_BETWEEN_OPERATOR", "Dates must be YYYY-MM-DD.") from None
            if cond.op == "BETWEEN":
                lo, hi = parsed[0], parsed[1]
            elif cond.op in (">=", ">"):
                lo = parsed[0]
            elif cond.op in ("<=", "<"):
                hi = parsed[0]
            elif cond.op == "=":
                lo = hi = parsed[0]
        return (lo, hi) if lo and hi else None


def _unquote(token: str) -> str:
    token = token.strip()
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
        return token[1:-1]
    return token


def _check_field(name: str, resource: str) -> None:
    prefix, _, rest = name.partition(".")
    allowed = (*RESOURCES[resource], "metrics", "segments")
    if prefix not in allowed or rest not in FIELDS.get(prefix, ()):
        raise QueryError("UNRECOGNIZED_FIELD", f"Unrecognized field in the query: '{name}'.")


def parse(text: str) -> Query:
    """Parse ``text``; raises QueryError with Google's error code when it cannot be served."""
    match = _QUERY.match(text)
    if not match:
        raise QueryError("UNEXPECTED_END_OF_QUERY", "Error in query: unexpected input.")
    resource = match.group("resource").lower()
    if resource not in RESOURCES:
        raise QueryError(
            "INVALID_RESOURCE_NAME", f"Error in FROM clause: invalid resource name '{resource}'."
        )
    fields = tuple(f.strip() for f in match.group("select").split(",") if f.strip())
    for name in fields:
        _check_field(name, resource)
    conditions: list[Condition] = []
    where = match.group("where")
    parts = _SPLIT_AND.split(where) if where else []
    i = 0
    while i < len(parts):
        chunk = parts[i]
        if re.search(r"\sBETWEEN\s", chunk, re.IGNORECASE) and i + 1 < len(parts):
            chunk, i = f"{chunk} AND {parts[i + 1]}", i + 1
        conditions.append(_condition(chunk, resource))
        i += 1
    query = Query(text, fields, resource, tuple(conditions), int(match.group("limit") or 0) or None)
    if query.segmented_by_date and query.date_range() is None:
        raise QueryError(
            "EXPECTED_FILTERS_ON_DATE_RANGE",
            "A finite date range filter on segments.date is required when segments.date is selected.",
        )
    return query


def _condition(chunk: str, resource: str) -> Condition:
    m = _COND.match(chunk)
    if not m:
        raise QueryError("INVALID_OPERATOR", f"Error in WHERE clause: cannot parse '{chunk.strip()}'.")
    name = m.group("field")
    _check_field(name, resource)
    if m.group("between"):
        return Condition(name, "BETWEEN", (_unquote(m.group("lo")), _unquote(m.group("hi"))))
    op = " ".join(m.group("op").upper().split())
    raw = m.group("value")
    if op in ("IN", "NOT IN"):
        values = tuple(_unquote(v) for v in raw.strip("()").split(",") if v.strip())
    else:
        values = (_unquote(raw),)
    return Condition(name, op, values)


def _compare(value: Any, op: str, values: tuple[str, ...]) -> bool:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if op == "=":
        return text == values[0]
    if op == "!=":
        return text != values[0]
    if op == "IN":
        return text in values
    if op == "NOT IN":
        return text not in values
    left: Any = text
    rights: list[Any] = list(values)
    if isinstance(value, int) and not isinstance(value, bool):
        left, rights = value, [int(v) for v in values]
    if op == "BETWEEN":
        return bool(rights[0] <= left <= rights[1])
    return bool(
        {">": left > rights[0], ">=": left >= rights[0], "<": left < rights[0], "<=": left <= rights[0]}[op]
    )


def matches(query: Query, values: dict[str, Any]) -> bool:
    """Whether a row with flat GAQL ``values`` passes the WHERE clause (dates are applied by the caller)."""
    return all(
        _compare(values.get(c.field), c.op, c.values) for c in query.conditions if c.field != "segments.date"
    )


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def field_mask(query: Query) -> str:
    """The response's ``fieldMask``: the selected fields in camelCase."""
    return ",".join(".".join(camel(p) for p in f.split(".")) for f in query.fields)


def render(query: Query, values: dict[str, Any], resource_names: dict[str, str]) -> dict[str, Any]:
    """One result row: nested camelCase objects, int64 as strings, ``resourceName`` on each resource."""
    row: dict[str, Any] = {}
    for name in query.fields:
        parts = name.split(".")
        value = values.get(name)
        if value is None:
            continue
        if parts[-1] in INT64_FIELDS and not isinstance(value, str):
            value = str(value)
        node = row
        for depth, part in enumerate(parts[:-1]):
            node = node.setdefault(camel(part), {})
            key = ".".join(parts[: depth + 1])
            if key in resource_names:
                node.setdefault("resourceName", resource_names[key])
        node[camel(parts[-1])] = value
    return row
