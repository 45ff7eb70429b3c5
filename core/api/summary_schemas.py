"""Response schemas of ``GET /v1/workspaces/{ws}/metrics/summary`` (built from ``core.services.summary``)."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

from pydantic import BaseModel, Field

from core.services.summary import CurrencyTotals, DayTotals, ProviderTotals, Totals, WorkspaceSummary


class TotalsPublic(BaseModel):
    """The five metrics summed; money in the row's currency."""

    spend: Decimal
    impressions: int
    clicks: int
    conversions: Decimal
    revenue: Decimal

    @classmethod
    def of(cls, totals: Totals) -> TotalsPublic:
        return cls(
            spend=totals.spend,
            impressions=totals.impressions,
            clicks=totals.clicks,
            conversions=totals.conversions,
            revenue=totals.revenue,
        )


class DayTotalsPublic(TotalsPublic):
    """One provider's totals of one day in one currency."""

    metrics_date: date
    provider: str
    currency: str

    @classmethod
    def of_day(cls, day: DayTotals) -> DayTotalsPublic:
        return cls(
            metrics_date=day.metrics_date,
            provider=day.provider,
            currency=day.currency,
            **TotalsPublic.of(day.totals).model_dump(),
        )


class ProviderTotalsPublic(TotalsPublic):
    """One provider's totals over the range in one currency, read at its primary level."""

    provider: str
    kind: str = Field(description="ads (spend and attributed revenue) or store (sales, no spend).")
    level: str = Field(description="The provider's primary level: the one covering all its spend.")
    currency: str
    roas: Decimal | None = Field(description="revenue / spend as the platform attributes it (ads only).")

    @classmethod
    def of_provider(cls, p: ProviderTotals) -> ProviderTotalsPublic:
        return cls(
            provider=p.provider,
            kind=p.kind,
            level=p.level,
            currency=p.currency,
            roas=p.roas,
            **TotalsPublic.of(p.totals).model_dump(),
        )


class CurrencyTotalsPublic(BaseModel):
    """A currency's ad platforms summed, with store revenue beside them and the blended ratios."""

    currency: str
    converted: bool = Field(description="true: converted from other currencies with operator-supplied rates.")
    ads: TotalsPublic = Field(description="Every ad platform's totals summed.")
    store_revenue: Decimal = Field(description="Stores' net sales (e.g. Shopify).")
    store_orders: Decimal
    roas: Decimal | None = Field(description="Ad platforms' attributed revenue / ad spend.")
    mer: Decimal | None = Field(description="Marketing efficiency ratio: store revenue / total ad spend.")

    @classmethod
    def of(cls, c: CurrencyTotals) -> CurrencyTotalsPublic:
        return cls(
            currency=c.currency,
            converted=c.converted,
            ads=TotalsPublic.of(c.ads),
            store_revenue=c.store_revenue,
            store_orders=c.store_orders,
            roas=c.roas,
            mer=c.mer,
        )


class WorkspaceSummaryPublic(BaseModel):
    """Workspace totals over the accounts' days ``since..until``: per currency, provider and day."""

    workspace_id: uuid.UUID
    since: date
    until: date
    currencies: list[CurrencyTotalsPublic] = Field(description="Totals per currency (never mixed).")
    converted: CurrencyTotalsPublic | None = Field(
        description="All currencies converted into the reporting currency (METRICX_REPORTING_CURRENCY) "
        "with METRICX_CURRENCY_RATES; null when not configured or a rate is missing."
    )
    missing_rates: list[str] = Field(description="Currencies (CUR or CUR@day) without a rate.")
    providers: list[ProviderTotalsPublic]
    days: list[DayTotalsPublic]
    unknown_providers: list[str] = Field(description="Connected providers whose plugin is not installed.")

    @classmethod
    def of(cls, s: WorkspaceSummary) -> WorkspaceSummaryPublic:
        return cls(
            workspace_id=s.workspace_id,
            since=s.since,
            until=s.until,
            currencies=[CurrencyTotalsPublic.of(c) for c in s.currencies],
            converted=CurrencyTotalsPublic.of(s.converted) if s.converted else None,
            missing_rates=list(s.missing_rates),
            providers=[ProviderTotalsPublic.of_provider(p) for p in s.providers],
            days=[DayTotalsPublic.of_day(d) for d in s.days],
            unknown_providers=list(s.unknown_providers),
        )
