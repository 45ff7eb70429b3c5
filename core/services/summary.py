"""Workspace totals: spend, revenue and the ratios people use, across every connection of a workspace.

Each connection is read at its provider's primary level (``Capabilities.default_level``, the level
whose rows cover all spend), never summed across levels; each day's value is that day's latest
snapshot per entity (snapshots are cumulative "day so far" totals). Money is never added across
currencies: totals are per currency, and converted totals exist only with operator-supplied rates
(:class:`CurrencyRates`) and say so (``converted=True``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.plugins import get_registry

#: The currency code of rows whose connection has no currency yet (ISO 4217 "no currency").
NO_CURRENCY = "XXX"
_PLACES = Decimal("0.0001")

_DAILY = """
WITH wanted AS (
  SELECT * FROM unnest(CAST(:providers AS text[]), CAST(:levels AS text[])) AS w(provider, level)
), latest AS (
  SELECT DISTINCT ON (s.entity_id, s.metrics_date)
         c.provider, s.metrics_date, coalesce(s.currency, c.currency, :none) AS currency,
         s.spend, s.impressions, s.clicks, s.conversions, s.revenue
  FROM metric_snapshots s
  JOIN entities e ON e.id = s.entity_id
  JOIN connections c ON c.id = s.connection_id
  JOIN wanted w ON w.provider = c.provider AND w.level = e.level
  WHERE s.workspace_id = :workspace_id AND c.workspace_id = :workspace_id
    AND s.metrics_date BETWEEN :since AND :until
    AND (CAST(:connections AS uuid[]) IS NULL OR c.id = ANY(CAST(:connections AS uuid[])))
  ORDER BY s.entity_id, s.metrics_date, s.captured_at DESC
)
SELECT metrics_date, provider, currency, sum(spend) AS spend, sum(impressions) AS impressions,
       sum(clicks) AS clicks, sum(conversions) AS conversions, sum(revenue) AS revenue
FROM latest GROUP BY metrics_date, provider, currency ORDER BY metrics_date, provider, currency
"""
_PROVIDERS = "SELECT DISTINCT provider FROM connections WHERE workspace_id = :workspace_id ORDER BY provider"


def default_range(today: date | None = None) -> tuple[date, date]:
    """The range workspace totals cover unless told otherwise: the 7 days ending today (UTC)."""
    until = today or datetime.now(UTC).date()
    return until - timedelta(days=6), until


def ratio(numerator: Decimal, denominator: Decimal) -> Decimal | None:
    """``numerator / denominator`` to 4 places, or None when the denominator is zero."""
    return None if not denominator else (numerator / denominator).quantize(_PLACES)


@dataclass(frozen=True, slots=True)
class Totals:
    """Sums of the five metrics; money (spend, revenue) in one currency."""

    spend: Decimal = Decimal(0)
    impressions: int = 0
    clicks: int = 0
    conversions: Decimal = Decimal(0)
    revenue: Decimal = Decimal(0)

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            self.spend + other.spend,
            self.impressions + other.impressions,
            self.clicks + other.clicks,
            self.conversions + other.conversions,
            self.revenue + other.revenue,
        )

    def converted(self, rate: Decimal) -> Totals:
        """The same totals with money multiplied by ``rate`` (counts unchanged)."""
        return Totals(self.spend * rate, self.impressions, self.clicks, self.conversions, self.revenue * rate)


@dataclass(frozen=True, slots=True)
class DayTotals:
    """One provider's totals of one day in one currency (all its connections, at its primary level)."""

    metrics_date: date
    provider: str
    currency: str
    totals: Totals


@dataclass(frozen=True, slots=True)
class ProviderTotals:
    """One provider's totals over the range in one currency; ``roas`` = revenue / spend (ads only)."""

    provider: str
    kind: str
    level: str
    currency: str
    totals: Totals

    @property
    def roas(self) -> Decimal | None:
        """Return on ad spend as the platform attributes it; None for a store or without spend."""
        return ratio(self.totals.revenue, self.totals.spend) if self.kind == "ads" else None


@dataclass(frozen=True, slots=True)
class CurrencyTotals:
    """A currency's totals: every ad platform's numbers summed, and the stores' sales beside them.

    ``mer`` (marketing efficiency ratio) = store revenue / total ad spend; ``roas`` = the ad
    platforms' attributed revenue / their spend. ``converted`` marks totals converted from other
    currencies with operator-supplied rates.
    """

    currency: str
    ads: Totals
    store_revenue: Decimal
    store_orders: Decimal = Decimal(0)
    converted: bool = False

    @property
    def roas(self) -> Decimal | None:
        return ratio(self.ads.revenue, self.ads.spend)

    @property
    def mer(self) -> Decimal | None:
        return ratio(self.store_revenue, self.ads.spend)


@dataclass(frozen=True, slots=True)
class WorkspaceSummary:
    """What :func:`workspace_summary` returns: per currency, per provider, and per day per provider.

    ``converted`` is set only when rates were given and cover every currency and day in the range;
    otherwise ``missing_rates`` lists what was missing (``"EUR"`` or ``"EUR@2026-11-30"``).
    ``unknown_providers`` had connections whose plugin is not installed: their data is not counted.
    """

    workspace_id: uuid.UUID
    since: date
    until: date
    currencies: tuple[CurrencyTotals, ...]
    providers: tuple[ProviderTotals, ...]
    days: tuple[DayTotals, ...]
    converted: CurrencyTotals | None = None
    missing_rates: tuple[str, ...] = ()
    unknown_providers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CurrencyRates:
    """Operator-supplied exchange rates into ``target``: one unit of ``c`` is ``rate`` of ``target``.

    ``daily[(c, day)]`` wins over ``fixed[c]`` for that day.
    """

    target: str
    fixed: Mapping[str, Decimal] = field(default_factory=dict)
    daily: Mapping[tuple[str, date], Decimal] = field(default_factory=dict)

    def rate(self, currency: str, day: date) -> Decimal | None:
        """The rate of ``currency`` on ``day``, or None when the operator gave none."""
        if currency == self.target:
            return Decimal(1)
        return self.daily.get((currency, day), self.fixed.get(currency))

    @classmethod
    def parse(cls, target: str, spec: str) -> CurrencyRates:
        """Rates from ``"EUR=1.08,GBP=1.27,EUR@2026-11-30=1.05"`` (the ``currency_rates`` setting)."""
        fixed: dict[str, Decimal] = {}
        daily: dict[tuple[str, date], Decimal] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            key, sep, value = item.partition("=")
            currency, at, day = key.strip().partition("@")
            try:
                rate = Decimal(value.strip())
                if not sep or not currency or rate <= 0 or not rate.is_finite():
                    raise ValueError(item)
                if at:
                    daily[(currency.upper(), date.fromisoformat(day))] = rate
                else:
                    fixed[currency.upper()] = rate
            except (ValueError, InvalidOperation):
                raise ValueError(
                    f"currency rate {item!r}: write CUR=RATE or CUR@YYYY-MM-DD=RATE with a positive RATE"
                ) from None
        return cls(target.upper(), fixed, daily)


def rates_from_settings() -> CurrencyRates | None:
    """The operator's rates (settings ``reporting_currency`` / ``currency_rates``), if configured."""
    from core.config import get_settings

    settings = get_settings()
    if not settings.reporting_currency:
        return None
    return CurrencyRates.parse(settings.reporting_currency, settings.currency_rates)


def _totals(row: Any) -> Totals:
    return Totals(
        Decimal(row.spend or 0),
        int(row.impressions or 0),
        int(row.clicks or 0),
        Decimal(row.conversions or 0),
        Decimal(row.revenue or 0),
    )


def _per_currency(days: Iterable[DayTotals], kinds: Mapping[str, str]) -> tuple[CurrencyTotals, ...]:
    ads: dict[str, Totals] = {}
    store: dict[str, Totals] = {}
    for d in days:
        into = store if kinds[d.provider] == "store" else ads
        into[d.currency] = into.get(d.currency, Totals()) + d.totals
    return tuple(
        CurrencyTotals(
            c,
            ads.get(c, Totals()),
            store.get(c, Totals()).revenue,
            store.get(c, Totals()).conversions,
        )
        for c in sorted(set(ads) | set(store))
    )


def _per_provider(
    days: Iterable[DayTotals], kinds: Mapping[str, str], levels: Mapping[str, str]
) -> tuple[ProviderTotals, ...]:
    sums: dict[tuple[str, str], Totals] = {}
    for d in days:
        sums[(d.provider, d.currency)] = sums.get((d.provider, d.currency), Totals()) + d.totals
    return tuple(ProviderTotals(p, kinds[p], levels[p], c, t) for (p, c), t in sorted(sums.items()))


def _convert(
    days: Iterable[DayTotals], kinds: Mapping[str, str], rates: CurrencyRates
) -> tuple[CurrencyTotals | None, tuple[str, ...]]:
    converted: list[DayTotals] = []
    missing: set[str] = set()
    for d in days:
        rate = rates.rate(d.currency, d.metrics_date)
        if rate is None:
            missing.add(f"{d.currency}@{d.metrics_date.isoformat()}")
            continue
        converted.append(DayTotals(d.metrics_date, d.provider, rates.target, d.totals.converted(rate)))
    if missing:
        return None, tuple(sorted(missing))
    [total] = _per_currency(converted, kinds) or (CurrencyTotals(rates.target, Totals(), Decimal(0)),)
    return (
        CurrencyTotals(total.currency, total.ads, total.store_revenue, total.store_orders, converted=True),
        (),
    )


async def workspace_summary(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    since: date,
    until: date,
    *,
    rates: CurrencyRates | None = None,
    connection_ids: Sequence[uuid.UUID] | None = None,
) -> WorkspaceSummary:
    """Totals of every connection of the workspace over the accounts' days ``since..until``.

    Each connection counts at its provider's primary level; a day's value is its latest snapshot.
    With ``rates``, ``converted`` holds the totals in ``rates.target`` (labelled converted).
    ``connection_ids`` narrows it to those connections (e.g. one account's "today so far").
    """
    registry = get_registry()
    present = [p for p in (await session.scalars(text(_PROVIDERS), {"workspace_id": workspace_id}))]
    installed = [p for p in present if p in registry.providers]
    caps = {p: registry.providers[p].capabilities for p in installed}
    levels = {p: c.default_level for p, c in caps.items()}
    kinds = {p: c.kind for p, c in caps.items()}
    result = await session.execute(
        text(_DAILY),
        {
            "providers": list(levels),
            "levels": list(levels.values()),
            "workspace_id": workspace_id,
            "since": since,
            "until": until,
            "none": NO_CURRENCY,
            "connections": [str(c) for c in connection_ids] if connection_ids is not None else None,
        },
    )
    days = tuple(DayTotals(r.metrics_date, r.provider, r.currency, _totals(r)) for r in result)
    converted, missing = _convert(days, kinds, rates) if rates is not None else (None, ())
    return WorkspaceSummary(
        workspace_id=workspace_id,
        since=since,
        until=until,
        currencies=_per_currency(days, kinds),
        providers=_per_provider(days, kinds, levels),
        days=days,
        converted=converted,
        missing_rates=missing,
        unknown_providers=tuple(p for p in present if p not in registry.providers),
    )
