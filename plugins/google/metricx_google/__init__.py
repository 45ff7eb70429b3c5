"""metricx provider for the Google Ads REST API (campaigns, ad groups, ads, daily metrics)."""

from __future__ import annotations

from metricx_google.provider import ChildAccount, GoogleAdsProvider
from metricx_google.settings import GoogleSettings

__all__ = ["ChildAccount", "GoogleAdsProvider", "GoogleSettings"]
