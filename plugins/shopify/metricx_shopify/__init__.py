"""metricx Shopify plugin: store provider, store sync job, own tables, webhooks and an Admin API simulator."""

from __future__ import annotations

from metricx_shopify.client import ShopifyClient
from metricx_shopify.provider import ShopifyProvider
from metricx_shopify.settings import ShopifySettings, get_shopify_settings

__all__ = ["ShopifyClient", "ShopifyProvider", "ShopifySettings", "get_shopify_settings"]
