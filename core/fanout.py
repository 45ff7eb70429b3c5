"""Fan-out: enqueue one sync per due connection, in pipelined batches, with stats by skip reason."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import structlog
from arq.constants import in_progress_key_prefix, job_key_prefix
from redis.asyncio import Redis
from sqlalchemy import select, update

from core.config import Settings
from core.crypto import decrypt, get_cipher
from core.db.engine import session_scope
from core.db.models import Connection, Credential
from core.enqueue import JobRequest, active_job, enqueue_many, sync_request
from core.errors import AuthError
from core.plugins import Registry
from core.providers import Credentials, SyncMode
from core.sync import status
from core.sync.windows import slot_start

log = structlog.get_logger(__name__).bind(component="SCHEDULER")

CHUNK = 2000


def slot_for(tick: str | None) -> str:
    """The fan-out slot: the tick's time (or now's 15-minute slot) as YYYYmmddHHMM."""
    at = datetime.fromisoformat(tick) if tick else slot_start(datetime.now(UTC))
    return at.astimezone(UTC).strftime("%Y%m%d%H%M")


async def repair_stuck(ctx: dict[str, Any]) -> int:
    """Connections left ``syncing`` / ``queued`` by a dead job become ``error`` with a clear message.

    A connection counts as stuck only when arq has no trace of its job: not
    queued, not in progress. A live job (even a slow one) is left alone.
    """
    settings: Settings = ctx["settings"]
    redis: Redis = ctx["redis"]
    repaired = 0
    async with session_scope() as session:
        candidates = await status.stuck_connections(session, settings.stuck_threshold_s)
    for connection_id, job_id in candidates:
        if job_id and (
            await redis.exists(in_progress_key_prefix + job_id) or await redis.exists(job_key_prefix + job_id)
        ):
            continue
        if await active_job(redis, str(connection_id)):
            continue
        async with session_scope() as session:
            if await status.repair(session, connection_id, job_id):
                repaired += 1
                log.warning("connection_repaired", connection_id=str(connection_id), job_id=job_id)
    return repaired


def _skip_reason(row: Any, now: datetime) -> str | None:
    if row.status != "active":
        return str(row.status)  # paused / disconnected
    if row.sync_status == "reconnect_required":
        return "reconnect_required"
    if row.rate_limited_until is not None and row.rate_limited_until > now:
        return "rate_limited"
    if row.sync_status in ("queued", "syncing"):
        return "already_queued"
    return None


async def fan_out(ctx: dict[str, Any], mode: SyncMode, tick: str | None) -> dict[str, Any]:
    """Enqueue ``process_sync_job`` in ``mode`` for every due connection; return the stats."""
    settings: Settings = ctx["settings"]
    registry: Registry = ctx["registry"]
    redis: Redis = ctx["redis"]
    await repair_stuck(ctx)
    slot = slot_for(tick)
    now = datetime.now(UTC)
    cipher = get_cipher(settings)
    skipped: Counter[str] = Counter()
    enqueued = duplicates = 0
    last_id: uuid.UUID | None = None
    while True:
        requests, invalid, queued_ids = await _collect(registry, cipher, slot, mode, now, last_id, skipped)
        if requests is None:
            break
        last_id = requests[1]
        batch: list[JobRequest] = requests[0]
        if batch and settings.fanout_spread_s > 0:
            batch = [
                JobRequest(
                    r.function,
                    r.job_id,
                    r.args,
                    r.kwargs,
                    settings.fanout_spread_s * i / len(batch),
                    r.connection_id,
                )
                for i, r in enumerate(batch)
            ]
        results = await enqueue_many(redis, batch)
        enqueued += sum(1 for r in results if r["status"] == "enqueued")
        duplicates += sum(1 for r in results if r["status"] == "already_queued")
        await _mark(invalid, queued_ids)
    stats = {
        "mode": mode.value,
        "slot": slot,
        "enqueued": enqueued,
        "already_queued": duplicates,
        "skipped": dict(skipped),
        "failed": skipped.get("failed", 0),
    }
    log.info("fanout_finished", **stats)
    return stats


async def _collect(
    registry: Registry,
    cipher: Any,
    slot: str,
    mode: SyncMode,
    now: datetime,
    after: uuid.UUID | None,
    skipped: Counter[str],
) -> tuple[tuple[list[JobRequest], uuid.UUID] | None, list[tuple[uuid.UUID, str]], list[uuid.UUID]]:
    query = (
        select(
            Connection.id,
            Connection.workspace_id,
            Connection.provider,
            Connection.status,
            Connection.sync_status,
            Connection.rate_limited_until,
            Credential.access_token_enc,
            Credential.refresh_token_enc,
            Credential.expires_at,
        )
        .outerjoin(Credential, Credential.connection_id == Connection.id)
        .order_by(Connection.id)
        .limit(CHUNK)
    )
    if after is not None:
        query = query.where(Connection.id > after)
    async with session_scope() as session:
        rows = (await session.execute(query)).all()
    if not rows:
        return None, [], []
    requests: list[JobRequest] = []
    invalid: list[tuple[uuid.UUID, str]] = []
    queued: list[uuid.UUID] = []
    for row in rows:
        reason = _skip_reason(row, now)
        if reason is None and row.provider not in registry.providers:
            reason = "provider_not_installed"
        if reason is None:
            creds = Credentials(
                decrypt(row.access_token_enc, cipher), decrypt(row.refresh_token_enc, cipher), row.expires_at
            )
            try:
                registry.providers[row.provider].check_credentials(creds)
            except AuthError as exc:
                invalid.append((row.id, exc.message))
                reason = "invalid_token"
        if reason:
            skipped[reason] += 1
            continue
        requests.append(sync_request(str(row.id), str(row.workspace_id), mode, slot=slot))
        queued.append(row.id)
    return (requests, rows[-1].id), invalid, queued


async def _mark(invalid: list[tuple[uuid.UUID, str]], queued: list[uuid.UUID]) -> None:
    async with session_scope() as session:
        for connection_id, message in invalid:
            await status.mark_failed(
                session, connection_id, sync_status="reconnect_required", kind="auth", message=message
            )
        if queued:
            await session.execute(
                update(Connection)
                .where(Connection.id.in_(queued), Connection.sync_status.not_in(("syncing",)))
                .values(sync_status="queued")
            )
