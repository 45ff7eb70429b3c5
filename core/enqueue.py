"""Typed enqueue helpers, and the one owner of writes to arq's keys that bypass arq's own enqueue.

A connection's queued or running sync is remembered under
``metricx:sync:active:{connection_id}``; asking again returns that job instead of
queueing a second one. Each enqueue is one atomic Lua call, so a batch of
thousands goes out in a few pipelined round trips (the fan-out path). The
scheduler's lease-fenced tick enqueue (:func:`enqueue_tick`) lives here too:
both scripts store a job exactly as ``ArqRedis.enqueue_job`` would, with arq's
own key prefixes and expiry (``arq.constants``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TypedDict

import msgpack
import structlog
from arq.connections import ArqRedis
from arq.jobs import serialize_job
from redis.asyncio import Redis

import core.keys as keys
from core.config import get_settings
from core.providers import SyncMode
from core.redis import create_arq_pool, serialize
from core.state import SyncJobId

log = structlog.get_logger(__name__, component="ARQ-ENQUEUE")

ACTIVE_TTL_MS = 6 * 3600 * 1000

# A whole batch of enqueues in one atomic call (no per-job round trip or command packing). Per job:
# refuse an id whose job or result exists (a duplicate); with a connection id, return the job that
# connection already has queued or running instead; else store the job and add it to the queue.
# With a second key (a set), every connection whose job is now queued, this one or the one it
# already had, is added to it, and the set expires after ARGV[8] ms (the fan-out's slot record).
# KEYS: queue[, record set]. ARGV: msgpack [[job id, payload, defer ms, connection id or ''], ...],
# now ms, job expiry ms, active ttl ms, job key prefix, result key prefix, active key prefix[, record ttl ms].
_ENQUEUE_BATCH = """
local jobs = cmsgpack.unpack(ARGV[1])
local now, expires, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local jprefix, rprefix, aprefix = ARGV[5], ARGV[6], ARGV[7]
local record = KEYS[2]
local recorded = false
local out = {}
for i, job in ipairs(jobs) do
  local id, payload, defer, conn = job[1], job[2], job[3], job[4]
  local res = 1
  if redis.call('EXISTS', jprefix .. id) == 1 or redis.call('EXISTS', rprefix .. id) == 1 then
    res = 0
  elseif conn ~= '' then
    local current = redis.call('GET', aprefix .. conn)
    if current and current ~= id and redis.call('EXISTS', jprefix .. current) == 1 then
      res = current
    else
      redis.call('SET', aprefix .. conn, id, 'PX', ttl)
    end
  end
  if res == 1 then
    redis.call('PSETEX', jprefix .. id, expires + defer, payload)
    redis.call('ZADD', KEYS[1], now + defer, id)
  end
  if record and res ~= 0 and conn ~= '' then
    redis.call('SADD', record, conn)
    recorded = true
  end
  out[i] = res
end
if recorded and tonumber(ARGV[8]) > 0 then redis.call('PEXPIRE', record, ARGV[8]) end
return out
"""

# The scheduler's tick, fenced by its lease: only the lease holder enqueues, once per entry and tick.
# KEYS: lease, last-ticks hash, job key, result key, queue
# ARGV: token, entry name, tick ms, payload, score, job expiry ms, job id, "enqueue" | "skip"
# Returns -1 when the caller no longer holds the lease, 0 when the tick was already
# handled (or only recorded as skipped), 1 when it was enqueued.
_ENQUEUE_TICK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local last = redis.call('HGET', KEYS[2], ARGV[2])
if last and tonumber(last) >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
if ARGV[8] ~= 'enqueue' then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 or redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
redis.call('PSETEX', KEYS[3], ARGV[6], ARGV[4])
redis.call('ZADD', KEYS[5], ARGV[5], ARGV[7])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class EnqueueResult(TypedDict):
    job_id: str | None
    status: Literal["enqueued", "already_queued"]


class JobRequest(NamedTuple):
    """One job to enqueue; ``connection_id`` set means at most one such job per connection.

    A named tuple, not a frozen dataclass: a fan-out builds 10,000 at a time, and a frozen
    dataclass's ``__init__`` (one ``object.__setattr__`` per field) cost ten times as much.
    """

    function: str
    job_id: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] | None = None
    defer_s: float = 0.0
    connection_id: str | None = None


def sync_mode(force_refresh: bool, backfill: bool) -> SyncMode:
    """The seed's flags as a mode: backfill wins, then force_refresh (attribution), else realtime."""
    if backfill:
        return SyncMode.backfill
    return SyncMode.attribution if force_refresh else SyncMode.realtime


def sync_request(
    connection_id: str,
    workspace_id: str,
    mode: SyncMode,
    *,
    slot: str | None = None,
    defer_s: float = 0.0,
) -> JobRequest:
    """``process_sync_job`` for one connection in ``mode`` (id ``sync:{connection}:{mode}:{slot}``).

    The mode travels as itself (the ``mode`` keyword), not as the seed's two flags.
    """
    return JobRequest(
        function="process_sync_job",
        job_id=SyncJobId.new(connection_id, mode.value, slot).format(),
        args=(connection_id, workspace_id),
        kwargs={"mode": mode.value},
        defer_s=defer_s,
        connection_id=connection_id,
    )


async def enqueue_many(
    redis: Redis,
    requests: Sequence[JobRequest],
    *,
    queue_name: str | None = None,
    record_in: str | None = None,
    record_ttl_s: int = 0,
) -> list[EnqueueResult]:
    """Enqueue many jobs, one atomic Redis call per ``fanout_batch_size`` jobs.

    A duplicate job id, or a connection that already has a sync queued or
    running, comes back as ``already_queued`` with the existing job's id. The
    batch travels as one msgpack argument, so 10,000 jobs cost a few calls.
    ``record_in`` names a set that, in the same atomic call, gets every request's
    connection id whose sync is now queued (its own job or the one it had), and
    expires ``record_ttl_s`` later (the fan-out's slot record).
    """
    queue = queue_name or get_settings().queue_name or keys.default_queue_name
    script = redis.register_script(_ENQUEUE_BATCH)
    now_ms = int(time.time() * 1000)
    results: list[EnqueueResult] = []
    batch = get_settings().fanout_batch_size
    payloads = _Payloads(now_ms)
    script_keys = [queue] if record_in is None else [queue, record_in]
    for start in range(0, len(requests), batch):
        chunk = requests[start : start + batch]
        jobs = [
            [req.job_id, payloads.build(req), int(req.defer_s * 1000), req.connection_id or ""]
            for req in chunk
        ]
        replies = await script(
            keys=script_keys,
            args=[
                msgpack.packb(jobs, use_bin_type=False),
                now_ms,
                keys.expires_extra_ms,
                ACTIVE_TTL_MS,
                keys.job_key_prefix,
                keys.result_key_prefix,
                keys.ACTIVE_SYNC_PREFIX,
                record_ttl_s * 1000,
            ],
        )
        for req, reply in zip(chunk, replies, strict=True):
            if reply == 1:
                results.append({"job_id": req.job_id, "status": "enqueued"})
            elif reply == 0:
                results.append({"job_id": req.job_id, "status": "already_queued"})
            else:
                current = reply.decode() if isinstance(reply, bytes) else str(reply)
                results.append({"job_id": current, "status": "already_queued"})
    return results


_NO_KWARGS: dict[str, Any] = {}


class _Payloads:
    """arq job payloads, byte for byte what ``serialize_job(..., serializer=serialize)`` returns.

    The payload is a msgpack map ``{t, f, a, k, et}`` in which only the arguments differ between
    the jobs of one function and keyword set: the bytes before and after them are packed once per
    batch (a fan-out's 10,000 jobs share one function and one ``kwargs`` dict).
    """

    def __init__(self, now_ms: int) -> None:
        self._now_ms = now_ms
        self._pack = msgpack.Packer(default=str, datetime=False).pack
        self._templates: dict[tuple[str, int], tuple[bytes, bytes, dict[str, Any]]] = {}

    def build(self, req: JobRequest) -> bytes:
        kwargs = _NO_KWARGS if req.kwargs is None else req.kwargs
        key = (req.function, id(kwargs))  # the template keeps kwargs alive: its id is not reused
        template = self._templates.get(key)
        if template is None:
            pack = self._pack
            head = b"\x85" + pack("t") + pack(None) + pack("f") + pack(req.function) + pack("a")
            tail = pack("k") + pack(kwargs) + pack("et") + pack(self._now_ms)
            template = self._templates[key] = (head, tail, kwargs)
        return template[0] + self._pack(req.args) + template[1]


@dataclass(frozen=True, slots=True)
class Fence:
    """Who may enqueue a tick: the lease key and the token its holder wrote there."""

    lease_key: str
    token: str


async def enqueue_tick(
    redis: Redis,
    fence: Fence,
    *,
    last_ticks_key: str,
    entry: str,
    tick_ms: int,
    request: JobRequest,
    queue_name: str,
    record_only: bool = False,
) -> int:
    """Enqueue one scheduler tick, if ``fence`` still holds the lease and the tick is new.

    The entry's last tick is recorded in ``last_ticks_key`` in the same atomic
    call. ``record_only`` records the tick without enqueueing (a tick too late
    to run). Returns -1 (lease lost), 0 (already handled or only recorded), 1 (enqueued).
    """
    now_ms = int(time.time() * 1000)
    payload = serialize_job(
        request.function, request.args, request.kwargs or {}, None, now_ms, serializer=serialize
    )
    reply = await redis.eval(  # type: ignore[misc]
        _ENQUEUE_TICK,
        5,
        fence.lease_key,
        last_ticks_key,
        keys.arq_job(request.job_id),
        keys.arq_result(request.job_id),
        queue_name,
        fence.token,
        entry,
        str(tick_ms),
        payload,  # type: ignore[arg-type]  # redis-py accepts bytes; its stubs say str
        str(now_ms),
        str(keys.expires_extra_ms),
        request.job_id,
        "skip" if record_only else "enqueue",
    )
    return int(reply)


async def release_active(redis: Redis, connection_id: str, job_id: str) -> None:
    """Forget the connection's active job if it is still ``job_id`` (called when a sync ends)."""
    await redis.eval(_RELEASE, 1, keys.active_sync(connection_id), job_id)  # type: ignore[misc]


async def active_job(redis: Redis, connection_id: str) -> str | None:
    """The job currently queued or running for the connection, if any."""
    value = await redis.get(keys.active_sync(connection_id))
    if value is None:
        return None
    job_id = value.decode() if isinstance(value, bytes) else str(value)
    return job_id if await redis.exists(keys.arq_job(job_id)) else None


_pool: ArqRedis | None = None


async def get_arq_pool() -> ArqRedis:
    """The process-wide enqueue pool (created on first use)."""
    global _pool
    if _pool is None:
        _pool = await create_arq_pool()
    return _pool


async def enqueue_sync_job(
    connection_id: str,
    workspace_id: str,
    force_refresh: bool = False,
    backfill: bool = False,
    *,
    mode: SyncMode | None = None,
    slot: str | None = None,
    defer_s: float = 0.0,
    redis: Redis | None = None,
) -> EnqueueResult:
    """Enqueue ``process_sync_job`` for one connection, or return the sync it already has.

    Returns ``{"job_id": ..., "status": "enqueued" | "already_queued"}``. No token is
    ever part of a job's arguments: the worker reads credentials from the database.
    """
    mode = mode or sync_mode(force_refresh, backfill)
    conn = redis or await get_arq_pool()
    [result] = await enqueue_many(
        conn, [sync_request(str(connection_id), str(workspace_id), mode, slot=slot, defer_s=defer_s)]
    )
    log.info("sync_enqueued", connection_id=str(connection_id), mode=mode.value, **result)
    return result
