"""The connection lock a running sync holds, and what a sync does when it finds the connection busy.

Waiting is not a failure: a sync whose connection is busy re-defers itself
through arq's ``Retry`` and gives back the try arq counted for it, so a long
holder (a 60 s store sync, a backfill) never uses up a waiter's tries. The wait
is recorded as one ``sync_runs`` row (try 0, ``waiting``, then ``waited``);
past ``lock_wait_bound_s`` the job is merged with the connection's next sync
(``merged``) instead of waiting forever.

The lock's value is the holder's job id: a try that finds its *own* job id
there knows an earlier try of the same job died holding it (arq runs one try
of a job at a time), and takes the lock over instead of waiting for it to expire.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog
from arq.worker import Retry
from redis.asyncio import Redis
from redis.asyncio.lock import Lock

import core.keys as keys
from core.config import Settings
from core.db.engine import session_scope
from core.enqueue import EnqueueResult, release_active
from core.state import RunStatus
from core.sync import status


class SyncJob(Protocol):
    """What this module needs of the engine's ``SyncJob`` (no import back into the engine)."""

    connection_id: uuid.UUID
    workspace_id: uuid.UUID
    mode: str
    job_id: str

    @property
    def active_key(self) -> str: ...


log = structlog.get_logger(__name__, component="SYNC_LOCK")

# Delete the lock only if it still names this job (an earlier try of it died holding it).
_TAKE_OVER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


async def acquire(redis: Redis, job: SyncJob, settings: Settings) -> tuple[Lock | None, str | None]:
    """The connection's lock for this job, or None and the job id of the sync holding it."""
    key = keys.connection_lock(job.connection_id)
    lock = redis.lock(key, timeout=settings.job_timeout_s + 5)
    if await lock.acquire(blocking=False, token=job.job_id):
        return lock, None
    holder = _text(await redis.get(key))
    if holder == job.job_id and await redis.eval(_TAKE_OVER, 1, key, job.job_id):  # type: ignore[misc]
        log.warning("sync_lock_taken_over", reason="an earlier try of this job died holding it")
        if await lock.acquire(blocking=False, token=job.job_id):
            return lock, None
        holder = _text(await redis.get(key))
    return None, holder or "another sync"


async def release(lock: Lock) -> None:
    """Give the lock back; an expired (or taken over) lock has nothing left to release."""
    try:
        await lock.release()
    except Exception as exc:  # redis-py's LockError (not ours any more) or a lost connection
        log.debug("lock_release_skipped", error=str(exc))


Requeue = Callable[[float], Awaitable[EnqueueResult]]


async def wait_turn(ctx: dict[str, Any], job: SyncJob, holder: str, requeue: Requeue) -> dict[str, Any]:
    """The connection is busy: re-defer this job without using a try, or merge it once waited too long.

    Raises :class:`arq.worker.Retry` to wait; returns the job's result when it is merged.
    """
    settings: Settings = ctx["settings"]
    redis: Redis = ctx["redis"]
    why = f"the connection is busy with {holder}; this sync runs after it"
    async with session_scope() as session:
        waited_s = await status.mark_waiting(
            session, job.connection_id, job.workspace_id, job.job_id, job.mode, why
        )
    if waited_s <= settings.lock_wait_bound_s:
        # arq counted this try when it started it; waiting is not a try, so give it back.
        await redis.decr(keys.arq_retry(job.job_id))
        defer = settings.lock_wait_poll_s * (0.75 + random.random() / 2)
        log.info("sync_waiting_for_lock", holder=holder, waited_s=round(waited_s, 1), defer_s=round(defer, 1))
        raise Retry(defer=defer)
    # Waited longer than any single holder runs: hand the work to the connection's next sync.
    await release_active(redis, job.active_key, job.job_id)
    nxt = await requeue(settings.lock_wait_poll_s)
    message = (
        f"the connection stayed busy for {waited_s:.0f}s (last with {holder}); "
        f"merged with its next sync {nxt['job_id']}"
    )
    async with session_scope() as session:
        await status.mark_merged(session, job.job_id, message)
    log.warning("sync_merged", holder=holder, waited_s=round(waited_s, 1), next_job_id=nxt["job_id"])
    return {"status": RunStatus.merged.value, "next_job_id": nxt["job_id"], "error": message}
