"""A try interrupted by PostgreSQL or Redis is retried, and never used up by the outage.

arq counts a try as it starts (``arq:retry:{job}``) and fails a job whose count passes
``max_tries``. A database restart is not the job's fault, so when such a fault hits the last
try, the count is given back (bounded by ``infra_max_retries`` per job) and the job runs again
after the backoff; the failure is recorded then, when the database answers.
"""

from __future__ import annotations

import uuid

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

import core.keys as keys
from core.config import Settings
from core.state import RunStatus
from core.sync import status

UNRECORDED_MESSAGE = "the database was unavailable when this try ended; the job was retried"

#: How long the per-job count of given-back tries is kept.
INFRA_COUNT_TTL_S = 86_400


async def give_back_try(
    redis: Redis, settings: Settings, job_id: str, job_try: int, max_tries: int | None = None
) -> int | None:
    """Count one infrastructure fault of ``job_id``; returns the count, or None past the bound.

    On the job's last try of work (``max_tries``, default the worker's) the arq try is handed
    back, so arq runs it again as a try of work, not as the call that closes an exhausted job.
    """
    key = keys.infra_retries(job_id)
    faults = int(await redis.incr(key))
    await redis.expire(key, INFRA_COUNT_TTL_S)
    if faults > settings.infra_max_retries:
        return None
    if job_try >= (max_tries or settings.max_tries):
        await redis.decr(keys.arq_retry(job_id))
    return faults


async def forget_faults(redis: Redis, job_id: str) -> None:
    """Drop the job's fault count once it has finished (success or a recorded failure)."""
    await redis.delete(keys.infra_retries(job_id))


async def remember_unrecorded(redis: Redis, job_id: str, run_id: uuid.UUID) -> None:
    """Note a try whose ``sync_runs`` row could not be closed; the job's next try closes it."""
    key = keys.unrecorded_runs(job_id)
    await redis.sadd(key, str(run_id))  # type: ignore[misc]
    await redis.expire(key, INFRA_COUNT_TTL_S)


async def close_unrecorded(redis: Redis, session: AsyncSession, job_id: str) -> int:
    """Close the job's earlier tries that the database missed (as ``retrying``); returns how many."""
    key = keys.unrecorded_runs(job_id)
    members = await redis.smembers(key)  # type: ignore[misc]
    for member in members:
        run_id = uuid.UUID(member.decode() if isinstance(member, bytes) else member)
        await status.update_run(
            session,
            run_id,
            status=RunStatus.retrying,
            finished_at=status.utcnow(),
            error_kind="infrastructure",
            error_message=UNRECORDED_MESSAGE,
        )
    if members:
        await redis.delete(key)
    return len(members)
