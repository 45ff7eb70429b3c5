"""Settings: one pydantic-settings class, read from the environment (prefix ``METRICX_``).

``DATABASE_URL`` and ``REDIS_URL`` are read without the prefix, as every
platform that hosts PostgreSQL and Redis sets them. Each field's description is
its documentation (``metricx config`` prints them).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

OPERATOR_KEY_MIN_LENGTH = 16


class Settings(BaseSettings):
    """Every setting of the core runtime. Plugins keep their own settings classes."""

    # hide_input_in_errors: a rejected value (a short operator key) never reaches an error or a log.
    model_config = SettingsConfigDict(
        env_prefix="METRICX_", extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

    # --- connections -----------------------------------------------------------------
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "METRICX_DATABASE_URL"),
        description="PostgreSQL URL (postgresql://user:pass@host:5432/db). Unset: the embedded server "
        "under data_dir is used by `metricx demo`; other commands require it.",
    )
    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL", "METRICX_REDIS_URL"),
        description="redis://[:password@]host:port/db, rediss:// for TLS, or "
        "redis+sentinel://host:26379,host2:26379/mymaster/db for Sentinel.",
    )
    redis_ssl_cert_reqs: str = Field(
        default="required",
        description="TLS certificate check for rediss:// (required | optional | none). "
        "Only turn it off for a provider that cannot present a valid certificate.",
    )
    redis_ssl_ca_certs: str | None = Field(default=None, description="CA bundle file for rediss://.")
    redis_conn_timeout_s: int = Field(default=30, description="Redis connect timeout in seconds.")
    redis_conn_retries: int = Field(default=5, description="Redis connect retries before giving up.")
    data_dir: Path = Field(
        default=Path(".metricx"),
        description="Where embedded PostgreSQL / Redis (and the demo's key) live.",
    )

    # --- secrets ---------------------------------------------------------------------
    encryption_keys: SecretStr | None = Field(
        default=None,
        description="Comma-separated Fernet keys; the first encrypts, all decrypt (rotate by "
        "prepending a new key, then `metricx keys rotate`). Required: the API, worker, scheduler and "
        "the commands that store tokens refuse to start without it (`metricx demo` makes its own "
        "under its data dir).",
    )
    operator_key: SecretStr | None = Field(
        default=None,
        description="Bearer key for operator endpoints (workspaces, their API keys); at least "
        f"{OPERATOR_KEY_MIN_LENGTH} characters "
        "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`).",
    )

    # --- API -------------------------------------------------------------------------
    access_log_sample: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="Share of API requests that write their access line (request_finished); server "
        "errors always do. 1 logs every request.",
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="The URL the API is reached at from a browser (no trailing slash); the OAuth "
        "redirect URL is {public_url}/v1/connect/{provider}/callback and must be registered with each "
        "platform's app.",
    )
    connect_state_ttl_s: int = Field(
        default=600, gt=0, description="Seconds a connect flow's authorization URL (its state) stays usable."
    )
    connect_session_ttl_s: int = Field(
        default=3600, gt=0, description="Seconds the accounts found by a connect flow may be picked from."
    )
    # --- API limits ---------------------------------------------------------------------
    max_body_bytes: int = Field(
        default=1_048_576, gt=0, description="Largest request body of the /v1 JSON routes (bytes): 413 above."
    )
    max_plugin_body_bytes: int = Field(
        default=5_242_880,
        gt=0,
        description="Largest request body of plugin routes under /v1/plugins "
        "(store webhooks carry whole orders).",
    )
    auth_max_failures: int = Field(
        default=30,
        gt=0,
        description="Failed API-key attempts one client address may make per window; then 429 until it ends.",
    )
    auth_failure_window_s: float = Field(default=60.0, gt=0, description="That window, in seconds.")

    @field_validator("operator_key")
    @classmethod
    def _long_operator_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and 0 < len(value.get_secret_value()) < OPERATOR_KEY_MIN_LENGTH:
            raise ValueError(
                f"must be at least {OPERATOR_KEY_MIN_LENGTH} characters (it can create workspaces)"
            )
        return value

    @field_validator("redis_ssl_cert_reqs")
    @classmethod
    def _known_cert_reqs(cls, value: str) -> str:
        if value not in {"required", "optional", "none"}:
            raise ValueError("must be required, optional or none")
        return value

    # --- worker ----------------------------------------------------------------------
    queue_name: str = Field(default="arq:queue", description="The arq queue every job goes to.")
    max_jobs: int = Field(default=10, description="Concurrent jobs per worker process.")
    worker_poll_delay_s: float = Field(
        default=0.02,
        gt=0,
        description="Seconds a worker waits between looks at the queue when it has a free slot: a "
        "slot freed by a finished job is refilled within this delay (arq's default, 0.5 s, capped "
        "a worker at max_jobs / 0.5 syncs per second). An idle worker costs one Redis call per look.",
    )
    job_timeout_s: int = Field(default=600, description="Seconds a job may run before arq cancels it.")
    keep_result_s: int = Field(default=3600, description="Seconds arq keeps a job's result.")
    max_tries: int = Field(default=3, description="Tries per job, the first included.")
    retry_base_s: float = Field(default=5.0, description="First retry delay; doubles each try, plus jitter.")
    retry_max_s: float = Field(default=300.0, description="Upper bound of one retry delay.")
    infra_max_retries: int = Field(
        default=20,
        description="Tries a job gets back after PostgreSQL or Redis faults (beyond max_tries), each "
        "after the usual backoff: a database outage delays work instead of dropping it.",
    )
    rate_limit_requeue_max_s: float = Field(
        default=900.0,
        description="A throttle shorter than this re-queues the sync for when it lifts; a longer one "
        "(a daily quota) leaves the connection rate_limited until the scheduler picks it up again.",
    )
    lock_wait_poll_s: float = Field(
        default=5.0,
        gt=0,
        description="A sync whose connection is busy (another sync holds its lock) looks again this "
        "many seconds later (plus jitter), without using one of its tries.",
    )
    lock_wait_max_s: float | None = Field(
        default=None,
        description="A sync that waited this long for its busy connection is merged with the "
        "connection's next sync (default: job_timeout_s + 60, longer than any one holder).",
    )
    stuck_after_s: int | None = Field(
        default=None,
        description="A connection syncing/queued for longer than this with no live job is repaired "
        "(default: job_timeout_s + 60).",
    )

    # --- windows ---------------------------------------------------------------------
    attribution_days: int | None = Field(
        default=None, description="Override every provider's attribution re-pull window (days; default 7)."
    )
    backfill_days: int | None = Field(
        default=None, description="Override every provider's backfill window (days; default 90)."
    )
    backfill_slice_days: int | None = Field(
        default=None, description="Override the days per backfill slice, the checkpoint unit (default 7)."
    )
    unavailable_recheck_days: int = Field(
        default=7,
        ge=1,
        description="A day a provider reported it cannot read is asked for again after this many days "
        "(the access may have been granted meanwhile); until then it is not available, never missing.",
    )
    http_timeout_s: float = Field(default=60.0, description="Timeout of one provider HTTP request.")

    # --- scheduler -------------------------------------------------------------------
    cron_realtime: str = Field(default="*/15 * * * *", description="Cron (UTC) of scheduled_realtime_sync.")
    cron_attribution: str = Field(
        default="0 3 * * *", description="Cron (UTC) of scheduled_attribution_sync."
    )
    cron_compaction: str = Field(default="0 1 * * *", description="Cron (UTC) of scheduled_compaction.")
    cron_reconcile: str = Field(
        default="7,37 * * * *",
        description="Cron (UTC) of scheduled_reconcile, which queues syncs closing coverage gaps "
        "(off the realtime ticks so the two never land in the same second).",
    )
    cron_token_upkeep: str = Field(
        default="19,49 * * * *",
        description="Cron (UTC) of scheduled_token_upkeep, which refreshes credentials before they "
        "expire and uses refresh tokens the platform would revoke when idle.",
    )
    token_upkeep_margin_s: int = Field(
        default=5400,
        ge=60,
        description="The upkeep refreshes an access token that expires within this many seconds "
        "(longer than the upkeep's period, so no token lapses between two passes).",
    )
    token_upkeep_concurrency: int = Field(
        default=16,
        ge=1,
        le=256,
        description="Credential refreshes one token upkeep pass runs at once (each is an HTTP call "
        "to the platform).",
    )
    credentials_expire_soon_days: int = Field(
        default=7,
        ge=1,
        description="Credentials that cannot be refreshed (Meta's long-lived tokens) and expire within "
        "this many days show the connection as expires_soon (API, `metricx status`).",
    )
    reconcile_on_startup: bool = Field(
        default=True,
        description="A starting worker queues one reconcile pass (gaps left while no worker ran).",
    )
    scheduler_lease_s: float = Field(default=30.0, description="Scheduler leadership lease in seconds.")
    scheduler_poll_s: float = Field(default=1.0, description="How often the scheduler checks its ticks.")
    scheduler_max_lateness_s: float = Field(
        default=3600.0,
        description="On a first start (no tick recorded), a tick missed by more than this is skipped. "
        "Once an entry has run, its latest missed tick always runs once when the scheduler is back.",
    )
    fanout_spread_s: float = Field(
        default=0.0, description="Spread fan-out job start times over this many seconds (0: all now)."
    )
    fanout_batch_size: int = Field(default=1000, description="Jobs enqueued per Redis pipeline.")
    fanout_retry_s: float = Field(
        default=300.0,
        description="An attribution fan-out re-runs this many seconds later for connections that were "
        "busy (a realtime sync queued or running), so none misses its daily re-pull.",
    )
    fanout_max_passes: int = Field(
        default=12, description="Upper bound of those attribution re-runs per day (slot)."
    )

    # --- workspace totals --------------------------------------------------------------
    reporting_currency: str | None = Field(
        default=None,
        description="Also show workspace totals converted into this currency (e.g. USD) with "
        "currency_rates, labelled as converted; totals per currency are always shown.",
    )
    currency_rates: str = Field(
        default="",
        description="Operator-supplied rates into reporting_currency: 'EUR=1.08,GBP=1.27' (one EUR is "
        "1.08 of it), per day with 'EUR@2026-11-30=1.05'; a day without its own rate uses the undated one.",
    )

    # --- metrics and alerts --------------------------------------------------------------
    worker_metrics_port: int | None = Field(
        default=None,
        description="Serve this worker's Prometheus metrics on http://0.0.0.0:PORT/metrics (unset: off). "
        "Each worker process serves its own registry: give workers on one host different ports.",
    )
    scheduler_metrics_port: int | None = Field(
        default=None,
        description="Serve the scheduler's Prometheus metrics (leadership, ticks) on this port (unset: off).",
    )
    metrics_bearer_token: SecretStr | None = Field(
        default=None,
        description="If set, the API's /metrics requires `Authorization: Bearer <this>` (unset: open).",
    )

    alert_webhooks_allow_private: bool = Field(
        default=False,
        description="Allow alert webhook URLs over http:// and to private, loopback or link-local "
        "addresses (development and tests only; production webhooks are https:// to public hosts).",
    )
    alert_delivery_timeout_s: float = Field(default=10.0, description="Timeout of one webhook delivery.")
    alert_max_attempts: int = Field(default=6, description="Delivery attempts per event and webhook.")
    alert_retry_base_s: float = Field(
        default=30.0, description="First delivery retry delay; doubles each attempt (capped at one hour)."
    )
    alert_token_expiry_days: int = Field(
        default=7, description="Announce a connection's token this many days before it expires."
    )

    # --- logging ---------------------------------------------------------------------
    log_format: Literal["console", "json"] | None = Field(
        default=None,
        description="console (development) or json (production). Unset: console when stderr is a "
        "terminal, json otherwise. Neither prints local variables; tracebacks are bounded.",
    )
    log_level: str = Field(default="INFO", description="Root log level.")

    @property
    def lock_wait_bound_s(self) -> float:
        return self.lock_wait_max_s if self.lock_wait_max_s is not None else self.job_timeout_s + 60

    @property
    def stuck_threshold_s(self) -> int:
        return self.stuck_after_s if self.stuck_after_s is not None else self.job_timeout_s + 60


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests call ``get_settings.cache_clear()``)."""
    return Settings()
