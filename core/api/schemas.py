"""Request and response bodies, split per use (``XCreate`` in, ``XPublic`` out).

No public schema has a field for a token: credentials are write-only.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.providers import SyncMode
from core.storable import check_storable

T = TypeVar("T")
# PostgreSQL text cannot hold NUL characters; reject them as invalid input instead of failing later.
NO_NUL = r"^[^\x00]*$"
MAX_CONFIG_BYTES = 16_384
WS_EXAMPLE = "6f1c2b7e-0d4a-4c35-9a57-3f1e0b8c2d11"
CONN_EXAMPLE = "0b9e5c1a-7f62-4e0e-8d0f-5b2a6c9e4f73"
JOB_EXAMPLE = f"sync:{CONN_EXAMPLE}:backfill:1767225600000"


class InputModel(BaseModel):
    """A request body: refuses what PostgreSQL cannot store with a 422, before any handler runs."""

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        check_storable(data, "body")
        return data


def check_token(value: str | None) -> str | None:
    """A token goes into HTTP headers and URLs: no control characters, no surrounding whitespace."""
    if value is None:
        return None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError("tokens must not contain control characters (CR, LF, tab): paste the token alone")
    stripped = value.strip()
    if not stripped:
        raise ValueError("the token is blank")
    return stripped


class ErrorBody(BaseModel):
    code: str = Field(examples=["connection_not_found"])
    message: str = Field(examples=["connection not found"])
    request_id: str | None = None


class ErrorResponse(BaseModel):
    """Every error: a stable machine code and a message for a person."""

    error: ErrorBody


class Page(BaseModel, Generic[T]):
    """One page of a list: ``next_offset`` is null on the last page."""

    items: list[T]
    total: int
    limit: int
    offset: int
    next_offset: int | None


class WorkspaceCreate(InputModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "Acme Ltd"}]})
    name: str = Field(min_length=1, max_length=200, pattern=NO_NUL)


class WorkspacePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    created_at: datetime


class ApiKeyCreate(InputModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "dashboard"}]})
    name: str | None = Field(default=None, max_length=200, pattern=NO_NUL)


class ApiKeyPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str | None
    prefix: str = Field(description="The first characters of the key, to tell keys apart.")
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The key itself: shown once, only its hash is stored.")


class CredentialsIn(InputModel):
    """Tokens for the platform account; write-only (never returned)."""

    access_token: str | None = Field(default=None, max_length=8000, pattern=NO_NUL)
    refresh_token: str | None = Field(default=None, max_length=8000, pattern=NO_NUL)
    expires_at: datetime | None = None
    scopes: list[Annotated[str, Field(max_length=200, pattern=NO_NUL)]] = Field(
        default_factory=list, max_length=100
    )

    @field_validator("access_token", "refresh_token")
    @classmethod
    def _header_safe(cls, value: str | None) -> str | None:
        return check_token(value)


class ConnectionCreate(InputModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "provider": "meta",
                    "external_account_id": "act_1234567890",
                    "name": "Acme EU",
                    "credentials": {"access_token": "EAAB..."},
                    "config": {},
                }
            ]
        }
    )
    provider: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    external_account_id: str = Field(min_length=1, max_length=128, pattern=NO_NUL)
    name: str | None = Field(default=None, max_length=300, pattern=NO_NUL)
    credentials: CredentialsIn
    config: dict[str, Any] = Field(
        default_factory=dict, description="Provider settings (e.g. base_url, login_customer_id)."
    )
    backfill: bool = Field(default=True, description="Enqueue the history backfill right away.")

    @field_validator("config")
    @classmethod
    def _storable_config(cls, value: dict[str, Any]) -> dict[str, Any]:
        from core.logging import SECRET_KEYS

        secret_named = sorted(k for k in value if SECRET_KEYS.search(str(k)))
        if secret_named:
            raise ValueError(
                f"config.{secret_named[0]} looks like a secret: send tokens in credentials (stored "
                "encrypted), never in config (stored and shown as is)"
            )
        encoded = json.dumps(value, allow_nan=False)
        if "\\u0000" in encoded:
            raise ValueError("config must not contain NUL characters")
        if len(encoded) > MAX_CONFIG_BYTES:
            raise ValueError(f"config must be at most {MAX_CONFIG_BYTES} bytes of JSON")
        return value


class ConnectionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    workspace_id: uuid.UUID
    provider: str
    external_account_id: str
    name: str | None
    timezone: str
    currency: str | None
    config: dict[str, Any]
    status: str = Field(examples=["active"], description="active | paused | disconnected")
    sync_status: str = Field(
        examples=["idle"], description="idle | queued | syncing | error | rate_limited | reconnect_required"
    )
    last_sync_attempted_at: datetime | None
    last_sync_completed_at: datetime | None
    last_sync_error: str | None
    last_error_kind: str | None
    rate_limited_until: datetime | None
    total_syncs_attempted: int
    total_syncs_succeeded: int
    backfill_completed_at: datetime | None
    current_job_id: str | None
    created_at: datetime
    credentials_state: Literal["ok", "expires_soon", "expired", "missing"] = Field(
        default="ok",
        description="expires_soon: the token cannot be refreshed and expires within "
        "METRICX_CREDENTIALS_EXPIRE_SOON_DAYS (reconnect before credentials_expire_at); expired; "
        "missing (a deleted connection); ok otherwise.",
    )
    credentials_expire_at: datetime | None = Field(
        default=None, description="When the stored access token expires (None: no expiry known)."
    )
    coverage: CoveragePublic | None = Field(
        default=None, description="Data coverage; filled when one connection is read, not in lists."
    )


class CoveragePublic(BaseModel):
    """Which local days of the backfill horizon hold final data (see ``core.coverage``)."""

    days_total: int = Field(examples=[90])
    days_covered: int = Field(examples=[87], description="Days whose final totals are stored.")
    days_missing: int = Field(examples=[3])
    days_queued: int = Field(examples=[3], description="Missing days a queued or running sync will fetch.")
    days_revisable: int = Field(
        examples=[28], description="Covered days the platform may still revise (re-read by attribution)."
    )
    oldest_missing: date | None = None
    days_unavailable: int = Field(
        default=0,
        examples=[30],
        description="Days the platform cannot show this account (not available: no value, never a zero); "
        "never fetched again.",
    )
    newest_unavailable: date | None = None
    unavailable_reason: str | None = Field(
        default=None,
        examples=["the app lacks read_all_orders: Shopify shows only the last 60 days of orders"],
    )
    summary: str = Field(examples=["87/90 days, 3 queued"])


class SyncRequest(InputModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"mode": "realtime"}]})
    mode: SyncMode = SyncMode.realtime


class SyncEnqueued(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "enqueued",
                    "job_id": JOB_EXAMPLE,
                    "connection_id": CONN_EXAMPLE,
                    "mode": "backfill",
                }
            ]
        }
    )
    status: Literal["enqueued", "already_queued"]
    job_id: str | None
    connection_id: uuid.UUID
    mode: SyncMode


class ConnectionCreated(ConnectionPublic):
    backfill: SyncEnqueued | None = None


class ConnectionReconnected(ConnectionPublic):
    catch_up: SyncEnqueued | None = Field(
        default=None,
        description="The sync queued to fetch the days the connection missed (only the missing days).",
    )
    days_missing: int = Field(default=0, description="Days of the backfill horizon without final data.")


class WorkspaceSyncResult(BaseModel):
    mode: SyncMode
    results: list[SyncEnqueued]


class Progress(BaseModel):
    slices_done: int
    slices_total: int


class JobPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job_id": JOB_EXAMPLE,
                    "connection_id": CONN_EXAMPLE,
                    "mode": "backfill",
                    "status": "complete",
                    "tries": 1,
                    "enqueued_at": "2026-01-01T00:00:00Z",
                    "started_at": "2026-01-01T00:00:01Z",
                    "finished_at": "2026-01-01T00:00:09Z",
                    "result": {"status": "complete", "rows": 540},
                    "error": None,
                    "progress": {"slices_done": 3, "slices_total": 3},
                }
            ]
        }
    )
    job_id: str
    connection_id: uuid.UUID
    mode: str
    status: Literal["queued", "in_progress", "complete", "failed"]
    tries: int
    enqueued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None
    error: str | None
    progress: Progress | None


class SyncRunPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    job_id: str
    mode: str
    window_start: date | None
    window_end: date | None
    try_number: int
    status: str
    started_at: datetime
    finished_at: datetime | None
    rows_written: int
    entities_written: int
    api_calls: int
    seconds_throttled: float
    error_kind: str | None
    error_message: str | None
    slices_done: int
    slices_total: int


class EntityPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    connection_id: uuid.UUID
    level: str
    external_id: str
    parent_id: uuid.UUID | None
    name: str | None
    status: str | None
    updated_at: datetime


class MetricRow(BaseModel):
    """Totals of one day (and one entity when grouped by entity), from each day's latest snapshot."""

    metrics_date: date
    entity_id: uuid.UUID | None = None
    external_id: str | None = None
    name: str | None = None
    spend: Decimal
    impressions: int
    clicks: int
    conversions: Decimal
    revenue: Decimal
    extra: dict[str, Decimal] = Field(
        default_factory=dict,
        description="The platform's own totals beside the five, by name (e.g. Meta's clicks_all, "
        "'Clicks (all)', where clicks is link clicks); see each plugin's README.",
    )

    @field_validator("extra", mode="before")
    @classmethod
    def _no_extra(cls, value: object) -> object:
        if isinstance(value, str):  # a driver without a JSON codec
            return json.loads(value)
        return value or {}


class MetricsPage(Page[MetricRow]):
    connection_id: uuid.UUID
    level: str
    currency: str | None
    timezone: str
    start: date
    end: date
    unavailable_days: list[date] = Field(
        default_factory=list,
        description="Days of the range the platform cannot show this account: not available (no row), "
        "not zero. The reason is unavailable_reason.",
    )
    unavailable_reason: str | None = None


class IntradayPoint(BaseModel):
    captured_at: datetime
    spend: Decimal
    impressions: int
    clicks: int
    conversions: Decimal
    revenue: Decimal


class IntradaySeries(BaseModel):
    connection_id: uuid.UUID
    level: str
    metrics_date: date
    currency: str | None
    timezone: str
    points: list[IntradayPoint]


class ApiVersionPublic(BaseModel):
    """The platform API version a provider speaks and when the platform retires it."""

    version: str = Field(examples=["v25.0"])
    sunset: date | None = Field(description="First day the platform refuses this version; null if none.")
    days_left: int | None = Field(description="Days until the sunset (negative once past).")
    status: Literal["supported", "sunset_soon", "sunset"] = Field(
        description="sunset_soon from 60 days before the sunset; sunset once it passed."
    )


class ProviderPublic(BaseModel):
    name: str
    display_name: str
    plugin: str
    version: str | None
    levels: list[str]
    attribution_window_days: int
    backfill_days: int
    backfill_slice_days: int
    timezone_source: str
    realtime: bool
    api_version: ApiVersionPublic
    # What the provider's quotas stand at (providers with ``quota_status``; see core/HOOKS.md).
    quotas: list[dict[str, Any]] = []


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)


class Readiness(Health):
    api_versions: dict[str, ApiVersionPublic] = Field(
        default_factory=dict, description="Each installed provider's platform API version and its sunset."
    )


class QueueDepth(BaseModel):
    queue: str = Field(examples=["arq:queue"])
    queued: int = Field(description="Jobs due now, waiting for a worker.", examples=[42])
    deferred: int = Field(description="Jobs scheduled for later (retries, throttled syncs).", examples=[3])
