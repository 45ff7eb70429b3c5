"""Settings of the Shopify plugin, read from the environment (prefix ``METRICX_SHOPIFY_``)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ShopifySettings(BaseSettings):
    """Every knob of the Shopify client, store sync and webhooks. Each description is its documentation."""

    model_config = SettingsConfigDict(env_prefix="METRICX_SHOPIFY_", extra="ignore")

    base_url: str | None = Field(
        default=None,
        description="Admin API root override (e.g. http://127.0.0.1:8083 for the simulator). "
        "Unset: https://{shop_domain} from the connection.",
    )
    api_version: str = Field(
        default="2026-10", description="Admin API version (quarterly: YYYY-01/04/07/10)."
    )
    page_size: int = Field(
        default=250, ge=1, le=250, description="`first` of a page before it is fitted to the cost bucket."
    )
    request_timeout_s: float = Field(default=30.0, gt=0, description="Timeout of one HTTP request.")
    max_retries: int = Field(
        default=2, ge=0, description="In-request retries of 5xx / network errors before raising them."
    )
    retry_backoff_s: float = Field(default=1.0, ge=0, description="First in-request retry delay; doubles.")
    max_throttle_retries: int = Field(
        default=5, ge=0, description="429 answers honoured (sleep Retry-After, try again) per request."
    )
    max_throttle_wait_s: float = Field(
        default=30.0,
        ge=0,
        description="A Retry-After longer than this defers the whole sync instead of holding the worker.",
    )
    burst_pct: float = Field(
        default=50.0,
        gt=0,
        le=100,
        description="Share of the bucket (%) a sync may use in a burst before pacing at the drain rate; "
        "the rest is headroom for the shop's other calls.",
    )
    sync_cron: str = Field(
        default="7 * * * *",
        description="Cron (UTC) of the scheduled store sync of every Shopify connection (at :07, "
        "between the core's 15-minute realtime ticks, so the two never start together).",
    )
    cursor_overlap_s: int = Field(
        default=60,
        ge=0,
        description="Seconds the next incremental sync re-reads before the last run's start (clock skew).",
    )
    bulk_backfill: bool = Field(
        default=True,
        description="A backfill window's orders are read by a bulk operation; realtime and attribution "
        "windows page.",
    )
    bulk_store_sync: bool = Field(
        default=True,
        description="A store sync's first (or full) read of orders runs as a bulk operation; "
        "incremental store syncs page.",
    )
    bulk_poll_s: float = Field(default=2.0, gt=0, description="Seconds between polls of a bulk operation.")
    bulk_max_wait_s: float = Field(
        default=3600.0,
        gt=0,
        description="A bulk operation still running after this long fails the try (the retry adopts it).",
    )
    bulk_busy_wait_s: float = Field(
        default=60.0,
        ge=0,
        description="How long a sync waits for another app-run bulk operation on the shop before it is "
        "deferred (Shopify runs one bulk query per shop at a time).",
    )
    bulk_download_timeout_s: float = Field(
        default=120.0, gt=0, description="Timeout of each read of a bulk result file's stream."
    )
    client_id: str | None = Field(
        default=None,
        description="The app's client id: refreshes expiring offline tokens and mints client-credentials "
        "tokens at https://{shop}/admin/oauth/access_token.",
    )
    client_secret: SecretStr | None = Field(
        default=None, description="The app's client secret (token refresh; also verifies webhooks)."
    )
    token_refresh_margin_s: int = Field(
        default=300,
        ge=0,
        description="An access token expiring within this many seconds is refreshed before it is used.",
    )
    refresh_lock_wait_s: float = Field(
        default=30.0,
        gt=0,
        description="How long a worker waits for another worker's refresh of the same shop to finish.",
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="The app's client secret: webhooks are verified with HMAC-SHA256 over the raw body. "
        "Unset: the webhook route answers 503.",
    )
    webhook_secrets: list[SecretStr] = Field(
        default_factory=list,
        description="Secrets of further apps (a JSON list): a webhook signed with any configured secret "
        "(WEBHOOK_SECRET, CLIENT_SECRET or one of these) is accepted, so several apps (a public app and "
        "merchants' custom apps, each with its own secret) can post to one route.",
    )
    webhook_dedupe_days: int = Field(
        default=7,
        ge=1,
        description="Days a delivered X-Shopify-Event-Id is remembered (Shopify retries 4 h).",
    )

    webhook_apply_lock_timeout_ms: int = Field(
        default=10_000,
        ge=0,
        description="How long the webhook job waits for a row lock before it fails and is retried "
        "(0: no limit). The delivery is safe in shopify_webhook_inbox meanwhile.",
    )
    webhook_apply_max_tries: int = Field(
        default=6,
        ge=1,
        description="Tries of one webhook job (backoff RETRY_BACKOFF_S x 4^try); after the last the row "
        "stays pending and the hourly fan-out enqueues it again.",
    )
    webhook_requeue_after_s: int = Field(
        default=600,
        ge=0,
        description="A delivery still pending this long after its arrival is enqueued again by the fan-out.",
    )


@lru_cache(maxsize=1)
def get_shopify_settings() -> ShopifySettings:
    """The process-wide settings (cached; tests call ``get_shopify_settings.cache_clear()``)."""
    return ShopifySettings()
