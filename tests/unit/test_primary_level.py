"""The metrics API's default level is declared by the provider, never taken from a list's position."""

from __future__ import annotations

import pytest
from metricx_shopify.provider import ShopifyProvider

from core.providers import Capabilities


def test_primary_level_is_the_default_and_must_be_a_level() -> None:
    assert Capabilities(levels=("store", "store_refunds"), primary_level="store").default_level == "store"
    assert Capabilities(levels=("account", "campaign")).default_level == "account"  # undeclared: the first
    with pytest.raises(ValueError, match="not one of the levels"):
        Capabilities(levels=("campaign", "ad"), primary_level="adset")


def test_shopify_declares_net_sales_as_its_primary_level() -> None:
    assert ShopifyProvider.capabilities.default_level == "store"
