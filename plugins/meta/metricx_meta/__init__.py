"""Meta Ads provider for metricx: Graph API client, provider and a local simulator."""

from __future__ import annotations

from metricx_meta.provider import MetaProvider
from metricx_meta.settings import MetaSettings

__all__ = ["MetaProvider", "MetaSettings"]
