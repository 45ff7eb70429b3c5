"""Syncs a user asks for (API, CLI): claim the connection, then enqueue, then give back what did not go out.

The fan-out (:mod:`core.fanout`) follows the same order for its batches, so a
worker never starts a job whose connection is not yet marked ``queued``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import structlog
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.engine import session_scope
from core.enqueue import EnqueueResult, JobRequest, active_job, enqueue_many, sync_request
from core.providers import SyncMode
from core.sync import status

log = structlog.get_logger(__name__)


async def request_syncs(
    redis: Redis,
    targets: Sequence[tuple[uuid.UUID, uuid.UUID]],
    mode: SyncMode,
    *,
    session: AsyncSession | None = None,
) -> list[EnqueueResult]:
    """Queue a ``mode`` sync of each (connection id, workspace id), or return the sync it already has.

    A connection with a sync queued or running answers with that job and is not
    touched. Every other one is claimed (``queued`` with the new job's id) in a
    committed transaction before its job is enqueued; a claim whose job did not
    go out (another request won the race) is given back.

    ``session``: write the claims in that session's open transaction and commit it (one transaction
    fewer for a request that has just read the connection in it); else in a transaction of their own.
    """
    results: dict[int, EnqueueResult] = {}
    pending: list[tuple[int, JobRequest]] = []
    for index, (connection_id, workspace_id) in enumerate(targets):
        current = await active_job(redis, str(connection_id))
        if current is not None:
            results[index] = {"job_id": current, "status": "already_queued"}
        else:
            pending.append((index, sync_request(str(connection_id), str(workspace_id), mode)))
    claims: dict[int, status.Claim] = {}
    if session is not None:
        try:
            await _claim(session, targets, pending, claims)
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
    else:
        async with session_scope() as own:
            await _claim(own, targets, pending, claims)
    sent = await _enqueue_holding(redis, [r for _, r in pending], [claims.get(i) for i, _ in pending])
    for (index, _), result in zip(pending, sent, strict=True):
        results[index] = result
    out = [results[i] for i in range(len(targets))]
    for (connection_id, _), result in zip(targets, out, strict=True):
        log.debug("sync_requested", connection_id=str(connection_id), mode=mode.value, **result)
    return out


async def enqueue_claimed(redis: Redis, held: status.Claim, request: JobRequest) -> EnqueueResult:
    """Enqueue the job of a connection already claimed for it (the claim committed), and give the
    claim back if the job did not go out (a sync another request queued meanwhile is returned)."""
    [result] = await _enqueue_holding(redis, [request], [held])
    log.debug("sync_requested", connection_id=str(held.connection_id), **result)
    return result


async def _enqueue_holding(
    redis: Redis, requests: list[JobRequest], claims: list[status.Claim | None]
) -> list[EnqueueResult]:
    """Enqueue jobs whose connections are claimed for them (``claims``, one per request); every
    claim whose job did not go out is given back, all of them if the enqueue failed."""
    try:
        sent = await enqueue_many(redis, requests)
    except BaseException:
        await _release([c for c in claims if c is not None])
        raise
    await _release(
        [c for c, r in zip(claims, sent, strict=True) if c is not None and r["status"] != "enqueued"]
    )
    return sent


async def _claim(
    session: AsyncSession,
    targets: Sequence[tuple[uuid.UUID, uuid.UUID]],
    pending: list[tuple[int, JobRequest]],
    claims: dict[int, status.Claim],
) -> None:
    for index, request in pending:
        held = await status.claim(session, targets[index][0], request.job_id)
        if held is not None:
            claims[index] = held


async def _release(claims: list[status.Claim]) -> None:
    if claims:
        async with session_scope() as session:
            await status.release(session, claims)
