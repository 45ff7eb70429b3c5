"""Settings of the Google Ads provider (env prefix ``METRICX_GOOGLE_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class GoogleSettings(BaseSettings):
    """Where the Google Ads API and the OAuth token endpoint live, and the OAuth client to use.

    Point ``base_url`` and ``token_url`` at the simulator
    (``python -m metricx_google.simulator``) to run without Google.
    """

    model_config = SettingsConfigDict(env_prefix="METRICX_GOOGLE_", extra="ignore")

    base_url: str = "https://googleads.googleapis.com"
    """Google Ads REST API root, without the version."""
    api_version: str = Field(default="v26", pattern=r"^v\d+$")
    """API version in the path (``METRICX_GOOGLE_API_VERSION``); each major version sunsets ~12 months
    after its release, so this is a setting: move it when the provider warns of a sunset."""
    auth_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    """Google's authorization endpoint (the connect flow's login and consent page)."""
    token_url: str = "https://oauth2.googleapis.com/token"
    """OAuth 2.0 token endpoint used to mint access tokens from refresh tokens."""
    client_id: str = ""
    """OAuth client id of the cloud project the refresh tokens were issued to."""
    client_secret: SecretStr = SecretStr("")
    """OAuth client secret (never logged)."""
    developer_token: SecretStr | None = None
    """Optional ``developer-token`` header (ignored by Google since Sep 2026)."""
    token_refresh_margin_s: int = Field(default=300, ge=0)
    """Cached access tokens are dropped this many seconds before they expire."""
    attribution_window_days: int = Field(default=7, ge=1, le=90)
    """Days the attribution sync re-reads (conversions move for up to 90 days)."""
    backfill_days: int = Field(default=90, ge=1)
    """Days of history a new connection backfills."""
    metrics_slice_days: int = Field(default=7, ge=1)
    """Days per searchStream request when fetching metrics (one slice is re-run if the stream breaks)."""
    request_timeout_s: float = Field(default=120.0, gt=0)
    """Timeout of one API request."""
    access_level: Literal["explorer", "basic", "standard"] = "explorer"
    """The developer token's access level: its daily operations (Explorer 2,880, Basic 15,000,
    Standard unlimited), the budget every worker spends from and realtime pacing follows."""
    daily_operations: int | None = Field(default=None, ge=1)
    """Override of the access level's daily operations (e.g. a budget below Google's quota)."""
    entity_refresh_s: int = Field(default=6 * 3600, ge=0)
    """Entities (campaigns, ad groups, ads) are re-read at most this often (0: every sync); metrics
    of an entity created in between are stored against a placeholder until then."""
    account_refresh_s: int = Field(default=24 * 3600, ge=0)
    """Account facts (name, time zone, currency) are re-read at most this often (0: every sync)."""

    def daily_budget(self) -> int | None:
        """The daily operations budget of the developer token (None: no cap)."""
        from metricx_google.quota import ACCESS_LEVELS

        return self.daily_operations or ACCESS_LEVELS[self.access_level]

    def api_root(self) -> str:
        """``{base_url}/{api_version}`` without a trailing slash."""
        return f"{self.base_url.rstrip('/')}/{self.api_version}"
