"""Settings of the Meta provider, read from the environment (prefix ``METRICX_META_``)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class MetaSettings(BaseSettings):
    """Every knob of the Meta client. Each field's description is its documentation."""

    model_config = SettingsConfigDict(env_prefix="METRICX_META_", extra="ignore")

    base_url: str = Field(
        default="https://graph.facebook.com",
        description="Graph API root, without the version (point it at the simulator for local runs).",
    )
    api_version: str = Field(
        default="v26.0",
        description="Marketing API version. Marketing versions expire sooner than the same Graph versions "
        "(v24.0 on 2026-11-10, v25.0 on 2027-02-23); see MARKETING_API_SUNSETS in provider.py.",
    )
    app_secret: SecretStr | None = Field(
        default=None,
        description="Secret of the Meta app (App settings > Basic). When set, every call carries "
        "appsecret_proof = HMAC-SHA256(app_secret, access_token), which apps with 'Require App Secret' "
        "demand. Never logged.",
    )
    app_id: str | None = Field(
        default=None,
        description="Id of the Meta app the connections' tokens were issued to. An app-wide throttle "
        "(code 4) then defers every connection of this app; unset, it defers those of the same token.",
    )
    oauth_dialog_url: str = Field(
        default="https://www.facebook.com",
        description="Where Facebook Login's dialog lives (the connect flow's authorization URL); point it "
        "at the simulator for local runs.",
    )
    oauth_scopes: str = Field(
        default="ads_read", description="Permissions the connect flow asks for (comma-separated)."
    )
    page_size: int = Field(default=100, ge=1, description="`limit` for entity and insights pages.")
    min_page_size: int = Field(
        default=10, ge=1, description="Smallest `limit` tried when Meta asks to reduce the amount of data."
    )
    request_timeout_s: float = Field(default=60.0, gt=0, description="Timeout of one HTTP request.")
    max_retries: int = Field(
        default=2, ge=0, description="In-request retries of transient failures before raising them."
    )
    retry_backoff_s: float = Field(default=1.0, ge=0, description="First retry delay; doubles each try.")
    throttle_default_retry_s: float = Field(
        default=300.0,
        ge=0,
        description="Retry delay for a throttle error that carries no estimated_time_to_regain_access.",
    )
    usage_block_pct: float = Field(
        default=95.0,
        ge=0,
        le=100,
        description="Usage percentage (any usage header) at which the account is blocked until it regains "
        "access; the shared limiter also slows down progressively from 70%.",
    )
    backfill_slice_days: int = Field(
        default=7, ge=1, description="Days per async report run during a backfill."
    )
    async_first_poll_s: float = Field(
        default=5.0,
        ge=0,
        description="Delay before the first poll of an async report run; it doubles up to "
        "async_poll_interval_s. Every poll is a call that counts against the account's quota.",
    )
    async_poll_interval_s: float = Field(
        default=60.0, ge=0, description="Longest delay between two polls of an async report run."
    )
    async_stuck_timeout_s: float = Field(
        default=300.0, ge=0, description="Fail a report run still at 0% after this many seconds."
    )
    async_max_wait_s: float = Field(
        default=3600.0, ge=0, description="Fail a report run not finished after this many seconds."
    )
