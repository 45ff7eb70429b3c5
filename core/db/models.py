"""SQLAlchemy 2 models of the core tables (DESIGN.md section 2). Plugins keep their own tables."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of the core tables."""

    metadata = MetaData(naming_convention=NAMING)


def _uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[uuid.UUID] = _uuid_pk()
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = _now()


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = _uuid_pk()
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str | None] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = _now()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Connection(Base):
    __tablename__ = "connections"
    __table_args__ = (
        UniqueConstraint("workspace_id", "provider", "external_account_id", name="uq_connections_account"),
        # The fan-out scans active connections by status; this keeps it an index scan. sync_status is
        # in no index, and pages keep room for a second copy of each row (fillfactor 40), so claims and
        # status moves are HOT updates, even a fan-out's claim of a whole page (migrations 0010, 0012).
        Index("ix_connections_status", "status"),
        # Every connection sharing a throttle scope (core/sync/throttle.py): `throttle_scopes @> ARRAY[key]`.
        Index("ix_connections_throttle_scopes", "throttle_scopes", postgresql_using="gin"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(64))
    external_account_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str | None] = mapped_column(String(300))
    timezone: Mapped[str] = mapped_column(String(64), server_default="UTC")
    currency: Mapped[str | None] = mapped_column(String(8))
    config: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    status: Mapped[str] = mapped_column(String(16), server_default="active")
    sync_status: Mapped[str] = mapped_column(String(24), server_default="idle")
    last_sync_attempted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_sync_completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_sync_error: Mapped[str | None] = mapped_column(String(500))
    last_error_kind: Mapped[str | None] = mapped_column(String(32))
    rate_limited_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    total_syncs_attempted: Mapped[int] = mapped_column(Integer, server_default="0")
    total_syncs_succeeded: Mapped[int] = mapped_column(Integer, server_default="0")
    backfill_completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Oldest day of the running backfill already stored (slices go newest first).
    backfill_cursor: Mapped[date | None] = mapped_column(Date)
    current_job_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = _now()
    # Keys of the rate-limit scopes this connection shares (keyed digests, never tokens), written
    # when a sync verified them; the account's key only once its credential reached the account.
    throttle_scopes: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'::text[]"))
    # The last day compaction folded (see core.compaction); NULL until the first run.
    compacted_through: Mapped[date | None] = mapped_column(Date)


class Credential(Base):
    __tablename__ = "credentials"

    id: Mapped[uuid.UUID] = _uuid_pk()
    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), unique=True
    )
    access_token_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    refresh_token_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    scopes: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = _now()
    # The connect flow (ConnectSession.id) that issued these tokens: every connection picked from
    # one grant holds a copy, so a reconnect of one can renew all of them (NULL: pasted tokens).
    grant_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), index=True)

    def __repr__(self) -> str:
        return f"Credential(connection_id={self.connection_id}, expires_at={self.expires_at})"


class ConnectSession(Base):
    """One OAuth connect flow: its state (as a keyed digest), then the tokens and accounts it found.

    ``status``: pending (URL handed out) -> authorized (tokens stored, accounts listed) -> completed
    (accounts picked; tokens erased here) | failed (denied, bad code, missing scope; nothing kept).
    """

    __tablename__ = "connect_sessions"

    id: Mapped[uuid.UUID] = _uuid_pk()
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(64))
    state_digest: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    code_verifier_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    reconnect_connection_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE")
    )
    access_token_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    refresh_token_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    token_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    scopes: Mapped[str | None] = mapped_column(Text)
    accounts: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    error_code: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Entity(Base):
    __tablename__ = "entities"
    __table_args__ = (
        UniqueConstraint("connection_id", "level", "external_id", name="uq_entities_natural"),
        Index("ix_entities_workspace_level", "workspace_id", "level"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    connection_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    level: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(128))
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("entities.id", ondelete="SET NULL"), index=True
    )
    name: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str | None] = mapped_column(String(64))
    raw: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    updated_at: Mapped[datetime] = _now()


class MetricSnapshot(Base):
    __tablename__ = "metric_snapshots"
    __table_args__ = (
        UniqueConstraint("entity_id", "metrics_date", "captured_at", name="uq_snapshots_natural"),
        # Compaction and the metrics API read one connection's days.
        Index("ix_snapshots_connection_date", "connection_id", "metrics_date"),
        # Monthly range partitions (migration 0008, core.partitions); the key is in every unique key.
        {"postgresql_partition_by": "RANGE (metrics_date)"},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    # No foreign keys (migration 0011): the writer takes these ids from the stored connection and
    # entity rows, and hard deletes of a connection or workspace delete its snapshots explicitly.
    workspace_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    connection_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    entity_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    metrics_date: Mapped[date] = mapped_column(Date, primary_key=True)
    captured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    spend: Mapped[Decimal] = mapped_column(Numeric(20, 6), server_default="0")
    impressions: Mapped[int] = mapped_column(BigInteger, server_default="0")
    clicks: Mapped[int] = mapped_column(BigInteger, server_default="0")
    conversions: Mapped[Decimal] = mapped_column(Numeric(20, 6), server_default="0")
    revenue: Mapped[Decimal] = mapped_column(Numeric(20, 6), server_default="0")
    currency: Mapped[str | None] = mapped_column(String(8))
    # A platform's own totals beside the five (MetricRecord.extra), e.g. {"clicks_all": 812}.
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class SyncRun(Base):
    __tablename__ = "sync_runs"
    __table_args__ = (
        UniqueConstraint("job_id", "try_number", name="uq_sync_runs_job_try"),
        Index("ix_sync_runs_connection_started", "connection_id", "started_at"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    connection_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    job_id: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(32))
    window_start: Mapped[date | None] = mapped_column(Date)
    window_end: Mapped[date | None] = mapped_column(Date)
    try_number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = _now()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rows_written: Mapped[int] = mapped_column(Integer, server_default="0")
    entities_written: Mapped[int] = mapped_column(Integer, server_default="0")
    api_calls: Mapped[int] = mapped_column(Integer, server_default="0")
    seconds_throttled: Mapped[float] = mapped_column(Numeric(12, 3), server_default="0")
    error_kind: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(String(500))
    slices_done: Mapped[int] = mapped_column(Integer, server_default="0")
    slices_total: Mapped[int] = mapped_column(Integer, server_default="0")


class CoverageDay(Base):
    """One local day of a connection's metrics and when it was last fetched.

    A day is *closed* (final totals stored) once it was fetched after the
    account-local midnight that ends it; coverage and the reconciler read this.
    """

    __tablename__ = "coverage_days"

    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    fetched_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Set when the provider reported the day cannot be read (``ProviderContext.coverage``): not
    # available, for this reason; neither missing nor covered. A later fetch that reads it clears it.
    unavailable_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class SchedulerTick(Base):
    """The last tick the scheduler handled per queue and entry: survives a Redis data loss."""

    __tablename__ = "scheduler_ticks"

    queue: Mapped[str] = mapped_column(String(200), primary_key=True)
    entry: Mapped[str] = mapped_column(String(200), primary_key=True)
    last_tick: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AlertWebhook(Base):
    """A URL of a workspace that receives signed connection alerts (``core.alerts``)."""

    __tablename__ = "alert_webhooks"

    id: Mapped[uuid.UUID] = _uuid_pk()
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(200))
    # The HMAC key, encrypted like the provider tokens; shown to the user once, at creation.
    secret_enc: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _now()


class AlertDelivery(Base):
    """One event sent (or being sent) to one webhook: the delivery log the API shows."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (Index("ix_alert_deliveries_workspace_created", "workspace_id", "created_at"),)

    id: Mapped[uuid.UUID] = _uuid_pk()
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    webhook_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("alert_webhooks.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(64))
    connection_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()


class AlertState(Base):
    """The last condition alerted per connection, so a condition is announced once, not every sync."""

    __tablename__ = "alert_states"

    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    condition: Mapped[str] = mapped_column(String(32))
    # The token expiry already announced (a new token with a new expiry is announced again).
    token_expiry_alerted: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = _now()
