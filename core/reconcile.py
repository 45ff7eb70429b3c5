"""The reconciler: queue the syncs that close each connection's coverage gaps.

Coverage (:mod:`core.coverage`) says which days of a connection's backfill
horizon have final data. Whatever left a gap (a backfill interrupted or failed
for good, days missed while the connection was paused, throttled or waiting
for a reconnect, yesterday not yet closed after the account's midnight), the
reconciler sees the gap itself and queues:

- a ``backfill`` when a day before yesterday is missing (it fetches only the
  missing days);
- a ``realtime`` sync when only yesterday is open (realtime keeps yesterday in
  its window until it is closed).

It runs as the scheduled ``scheduled_reconcile`` and once when a worker
starts. Connections that are busy, throttled or need a reconnect are left for
a later pass; the queued jobs go through the same claim-then-enqueue path as
the fan-out, with deterministic ids per pass, so two passes never queue a
connection twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypedDict

import structlog
from redis.asyncio import Redis
from sqlalchemy import Row, select

from core.config import Settings
from core.coverage import Coverage, coverage_of
from core.db.engine import session_scope
from core.db.models import Connection
from core.enqueue import JobRequest, enqueue_many, sync_request
from core.fanout import repair_stuck, slot_for
from core.plugins import Registry
from core.providers import SyncMode
from core.state import BUSY, ConnectionStatus, SyncStatus
from core.sync import status
from core.sync.windows import local_today

log = structlog.get_logger(__name__, component="RECONCILER")

ConnRow = Row[*tuple[Any, ...]]

RECONCILE_JOB = "scheduled_reconcile"


class ReconcileStats(TypedDict):
    """What one pass found and queued."""

    checked: int
    complete: int
    backfills: int
    realtime: int
    skipped: dict[str, int]


def gap_mode(coverage: Coverage, yesterday: date, *, realtime: bool) -> SyncMode | None:
    """The sync that closes ``coverage``'s gaps: a backfill for older days, realtime for yesterday only."""
    if not coverage.missing:
        return None
    if any(day != yesterday for day in coverage.missing) or not realtime:
        return SyncMode.backfill
    return SyncMode.realtime


def _skip_reason(row: ConnRow, registry: Registry, now: datetime) -> str | None:
    if row.status != ConnectionStatus.active:
        return str(row.status)
    if row.sync_status == SyncStatus.reconnect_required:
        return "reconnect_required"
    if row.rate_limited_until is not None and row.rate_limited_until > now:
        return "rate_limited"
    if row.sync_status in BUSY:
        return "busy"
    if row.provider not in registry.providers:
        return "provider_not_installed"
    return None


async def _rows() -> Sequence[ConnRow]:
    query = select(
        Connection.id,
        Connection.workspace_id,
        Connection.provider,
        Connection.status,
        Connection.sync_status,
        Connection.rate_limited_until,
        Connection.timezone,
    ).order_by(Connection.id)
    async with session_scope() as session:
        return (await session.execute(query)).all()


async def _queue(redis: Redis, rows: list[tuple[ConnRow, SyncMode]], slot: str) -> tuple[int, int]:
    """Claim and enqueue each (row, mode); give back claims whose job was not enqueued."""
    counts = {SyncMode.backfill: 0, SyncMode.realtime: 0}
    for mode in counts:
        wanted = [row for row, m in rows if m is mode]
        if not wanted:
            continue
        async with session_scope() as session:
            claimed = await status.claim_due(session, [r.id for r in wanted], mode.value, slot)
        mine = [r for r in wanted if r.id in claimed]
        requests = [sync_request(str(r.id), str(r.workspace_id), mode, slot=slot) for r in mine]
        results = await enqueue_many(redis, requests)
        lost = {
            r.id: r.sync_status for r, res in zip(mine, results, strict=True) if res["status"] != "enqueued"
        }
        counts[mode] += len(mine) - len(lost)
        async with session_scope() as session:
            await status.unclaim_due(session, lost)
    return counts[SyncMode.backfill], counts[SyncMode.realtime]


async def reconcile(ctx: dict[str, Any], tick: str | None = None) -> ReconcileStats:
    """One pass over every connection: queue the sync that closes its coverage gap, if any."""
    settings: Settings = ctx["settings"]
    registry: Registry = ctx["registry"]
    # A connection left ``queued`` by a job that died would otherwise look busy forever.
    await repair_stuck(ctx)
    now = datetime.now(UTC)
    skipped: dict[str, int] = {}
    todo: list[tuple[ConnRow, SyncMode]] = []
    complete = 0
    rows = await _rows()
    for row in rows:
        reason = _skip_reason(row, registry, now)
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        caps = registry.providers[row.provider].capabilities
        tz = row.timezone or "UTC"
        async with session_scope() as session:
            cov = await coverage_of(
                session,
                row.id,
                tz,
                now,
                days=settings.backfill_days or caps.backfill_days,
                revision_days=caps.revision_days,
            )
        yesterday = local_today(tz, now) - timedelta(days=1)
        mode = gap_mode(cov, yesterday, realtime=caps.realtime)
        if mode is None:
            complete += 1
        else:
            todo.append((row, mode))
    backfills, realtime = await _queue(ctx["redis"], todo, "r" + slot_for(tick))
    stats: ReconcileStats = {
        "checked": len(rows),
        "complete": complete,
        "backfills": backfills,
        "realtime": realtime,
        "skipped": dict(sorted(skipped.items())),
    }
    log.info("reconcile_finished", **stats)
    return stats


def startup_request(now: datetime) -> JobRequest:
    """The reconcile pass a starting worker queues (one per 15-minute slot, however many workers start)."""
    slot = slot_for(now.isoformat())
    return JobRequest(RECONCILE_JOB, f"reconcile:startup:{slot}", kwargs={})


async def queue_on_startup(redis: Redis) -> None:
    """Queue one reconcile pass now: a worker that starts picks up gaps left while none ran."""
    await enqueue_many(redis, [startup_request(datetime.now(UTC))])


__all__ = ["RECONCILE_JOB", "ReconcileStats", "gap_mode", "queue_on_startup", "reconcile"]
