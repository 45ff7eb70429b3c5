"""Workspace-totals pieces that need no database: operator rates, ratios, primary levels, CSV."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

import pytest

from core.api.csv import csv_text, wants_csv
from core.providers import Capabilities
from core.services.summary import CurrencyRates, CurrencyTotals, ProviderTotals, Totals, ratio


def test_rates_parse_fixed_and_daily_and_the_target_is_one() -> None:
    rates = CurrencyRates.parse("usd", "EUR=1.08, gbp=1.27,EUR@2026-11-30=1.05")
    assert rates.target == "USD"
    assert rates.rate("EUR", date(2026, 11, 29)) == Decimal("1.08")
    assert rates.rate("EUR", date(2026, 11, 30)) == Decimal("1.05")  # the day's own rate wins
    assert rates.rate("GBP", date(2026, 1, 1)) == Decimal("1.27")
    assert rates.rate("USD", date(2026, 1, 1)) == 1
    assert rates.rate("JPY", date(2026, 1, 1)) is None  # never guessed


@pytest.mark.parametrize("spec", ["EUR", "EUR=abc", "EUR=-1", "EUR@30-11-2026=1", "=1.2", "EUR=NaN"])
def test_bad_rates_say_how_to_write_them(spec: str) -> None:
    with pytest.raises(ValueError, match="CUR=RATE"):
        CurrencyRates.parse("USD", spec)


def test_ratios_and_roas_only_for_ads() -> None:
    totals = Totals(spend=Decimal("200"), revenue=Decimal("650"))
    assert ProviderTotals("meta", "ads", "campaign", "USD", totals).roas == Decimal("3.25")
    assert ProviderTotals("shopify", "store", "store", "USD", totals).roas is None
    both = CurrencyTotals("USD", totals, store_revenue=Decimal("900"))
    assert both.mer == Decimal("4.5") and both.roas == Decimal("3.25")
    assert CurrencyTotals("USD", Totals(), Decimal("10")).mer is None  # no spend: no ratio, no crash
    assert ratio(Decimal(1), Decimal(3)) == Decimal("0.3333")


def test_primary_level_defaults_to_the_first_level() -> None:
    assert Capabilities(levels=("campaign", "ad")).default_level == "campaign"
    assert Capabilities(levels=("campaign", "ad"), primary_level="ad").default_level == "ad"


def test_builtin_providers_declare_a_level_that_covers_all_spend() -> None:
    from metricx_google.provider import GoogleAdsProvider
    from metricx_meta.provider import MetaProvider
    from metricx_shopify.provider import ShopifyProvider

    assert MetaProvider().capabilities.default_level == "campaign"
    assert GoogleAdsProvider().capabilities.default_level == "campaign"  # PMax has no ad groups
    shop = ShopifyProvider().capabilities
    assert (shop.default_level, shop.kind) == ("store", "store")


def test_csv_negotiation_and_quoting() -> None:
    assert wants_csv("csv", None) and wants_csv(None, "text/csv, */*")
    assert not wants_csv("json", "text/csv") and not wants_csv(None, "application/json")
    text = csv_text(("name", "spend"), [('Summer, "big" sale', Decimal("1.50")), (None, 2)])
    assert list(csv.reader(io.StringIO(text))) == [
        ["name", "spend"],
        ['Summer, "big" sale', "1.50"],
        ["", "2"],
    ]
    risky = csv_text(("name", "spend"), [("=HYPERLINK(1)", "-1.50"), ("@x", "+2")])
    assert list(csv.reader(io.StringIO(risky)))[1:] == [["'=HYPERLINK(1)", "-1.50"], ["'@x", "+2"]]
