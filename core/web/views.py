"""What the dashboard pages show: connection rows, sync runs, backfill progress, charts.

Everything is scoped to the signed-in workspace: a connection of another
workspace is looked up as if it did not exist.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.api.deps import PageParams
from core.api.routes.data import daily_metrics
from core.api.schemas import MetricsPage
from core.db.models import Connection, SyncRun
from core.providers import SyncMode
from core.state import NEEDS_ATTENTION, ConnectionStatus, RunStatus, SyncStatus
from core.web.charts import Chart, bar_chart

CHART_DAYS = 30
RUNS_SHOWN = 15


@dataclass(frozen=True, slots=True)
class Action:
    """What a connection's state calls for: a button the dashboard offers, or a note of what to do."""

    label: str
    button: str | None  # sync | pause | resume | reconnect, or None when only waiting helps
    note: str = ""


@dataclass(frozen=True, slots=True)
class ConnectionRow:
    """One connection as the dashboard lists it."""

    connection: Connection
    freshness: str
    needs_attention: bool
    action: Action | None

    @property
    def label(self) -> str:
        return self.connection.name or self.connection.external_account_id


@dataclass(frozen=True, slots=True)
class Progress:
    """A running backfill's progress in slices."""

    done: int
    total: int

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """ "synced 4 min ago"-style freshness; "never synced" when there was no successful sync."""
    if moment is None:
        return "never synced"
    seconds = max(0, int(((now or datetime.now(UTC)) - moment).total_seconds()))
    if seconds < 60:
        return "synced just now"
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            count = seconds // size
            suffix = "s" if unit == "day" and count > 1 else ""
            return f"synced {count} {unit}{suffix} ago"
    return "synced just now"  # unreachable: seconds >= 60 matched "min"


def action_for(connection: Connection, now: datetime | None = None) -> Action | None:
    """The action a connection's state calls for, or None when it is fine."""
    status, sync = connection.status, connection.sync_status
    if status == ConnectionStatus.disconnected:
        return Action("connect the account again", None, "it was disconnected and its tokens erased")
    if status == ConnectionStatus.paused:
        return Action("resume", "resume", "paused: no scheduled or manual syncs")
    if sync == SyncStatus.reconnect_required:
        return Action(
            "reconnect",
            "reconnect",
            "the platform refused the tokens; reconnect: log in at the platform again through the "
            "connect flow (the connection keeps its id and history)",
        )
    if sync == SyncStatus.rate_limited:
        until = connection.rate_limited_until
        when = until.astimezone(UTC).strftime("%H:%M UTC") if until else "the throttle lifts"
        return Action(f"wait until {when}", None, "throttled by the platform; the next sync continues")
    if sync == SyncStatus.error:
        return Action("sync now", "sync", "the last sync failed; retry once the cause is fixed")
    return None


def connection_row(connection: Connection, now: datetime | None = None) -> ConnectionRow:
    """A connection with its freshness, attention flag and action."""
    return ConnectionRow(
        connection=connection,
        freshness=ago(connection.last_sync_completed_at, now),
        needs_attention=connection.sync_status in NEEDS_ATTENTION,
        action=action_for(connection, now),
    )


async def connection_rows(
    session: AsyncSession, workspace_id: uuid.UUID, *, attention_only: bool = False
) -> list[ConnectionRow]:
    """The workspace's connections (or only those needing attention), oldest first."""
    query = select(Connection).where(Connection.workspace_id == workspace_id)
    if attention_only:
        query = query.where(Connection.sync_status.in_([s.value for s in NEEDS_ATTENTION]))
    rows = await session.scalars(query.order_by(Connection.created_at, Connection.id))
    now = datetime.now(UTC)
    return [connection_row(c, now) for c in rows]


async def find_connection(
    session: AsyncSession, workspace_id: uuid.UUID, connection_id: uuid.UUID
) -> Connection | None:
    """The connection, only within ``workspace_id``."""
    found: Connection | None = await session.scalar(
        select(Connection).where(Connection.id == connection_id, Connection.workspace_id == workspace_id)
    )
    return found


async def recent_runs(session: AsyncSession, connection: Connection) -> list[SyncRun]:
    """The connection's latest sync runs, newest first."""
    rows = await session.scalars(
        select(SyncRun)
        .where(SyncRun.connection_id == connection.id, SyncRun.workspace_id == connection.workspace_id)
        .order_by(SyncRun.started_at.desc())
        .limit(RUNS_SHOWN)
    )
    return list(rows)


def backfill_progress(runs: list[SyncRun]) -> Progress | None:
    """The progress of the running backfill among ``runs``, if one is running."""
    for run in runs:
        if run.mode == SyncMode.backfill and run.status == RunStatus.running:
            return Progress(run.slices_done, run.slices_total)
    return None


def account_today(connection: Connection) -> date:
    """Today in the account's timezone (the API's default end day)."""
    try:
        zone = ZoneInfo(connection.timezone or "UTC")
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    return datetime.now(zone).date()


async def charts(session: AsyncSession, connection: Connection) -> list[Chart]:
    """Daily spend, conversions and revenue of the last days, from the API's own metrics route."""
    end = account_today(connection)
    start = end - timedelta(days=CHART_DAYS - 1)
    page = await daily_metrics(
        connection, session, PageParams(limit=200, offset=0), start, end, None, "level", None, None, None
    )
    if not isinstance(page, MetricsPage):  # only a CSV request answers a Response
        raise TypeError("daily_metrics answered CSV to a JSON request")
    by_day = {row.metrics_date: row for row in page.items}
    days = [start + timedelta(days=i) for i in range(CHART_DAYS)]
    currency = connection.currency or ""

    def series(metric: str) -> list[tuple[date, Decimal]]:
        return [(d, Decimal(getattr(by_day[d], metric)) if d in by_day else Decimal(0)) for d in days]

    return [
        bar_chart("spend", "Spend", currency, series("spend")),
        bar_chart("conversions", "Conversions", "", series("conversions")),
        bar_chart("revenue", "Revenue", currency, series("revenue")),
    ]
