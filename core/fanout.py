"""Fan-out: enqueue one sync per due connection, in pipelined batches, with stats by skip reason.

A pass pages connections by id (``CHUNK`` at a time). For each page it skips
connections that are not due (with a reason), checks tokens offline with each
provider's ``check_credentials``, *claims* the due ones in one ``UPDATE ...
RETURNING`` (``queued``, only if not already queued or syncing, so two fan-outs
never claim a connection twice) and enqueues their ``process_sync_job`` with
deterministic ids through :func:`core.enqueue.enqueue_many`.

Connections enqueued in a slot are remembered in Redis (a set written in the
enqueue's own atomic call), so re-running a slot enqueues nothing new. The claim
is a heap-only update of each row (``sync_status`` is in no index and pages keep
room for a second copy of their rows: migrations 0010, 0011); a page costs two
PostgreSQL transactions (read, claim) and two Redis calls (slot check, enqueue;
one more MGET when its connections have throttle scopes).

Attribution is once a day, so a connection that is busy (a realtime sync queued
or running) is not dropped: the attribution fan-out re-runs itself a few minutes
later for the ones it could not claim.
"""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypedDict

import structlog
from cryptography.fernet import MultiFernet
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import Row, bindparam, select, type_coerce
from sqlalchemy.sql.sqltypes import NullType

import core.keys as keys
from core.config import Settings
from core.crypto import decrypt, get_cipher
from core.db.engine import session_scope
from core.db.models import Connection, Credential
from core.enqueue import EnqueueResult, JobRequest, active_job, enqueue_many, sync_request
from core.errors import AuthError, MetricxError
from core.plugins import Registry
from core.providers import Credentials, SyncMode
from core.state import BUSY, SYNC_JOB_PREFIX, ConnectionStatus, SyncJobId, SyncStatus
from core.sync import status
from core.sync.throttle import skip_blocked
from core.sync.windows import slot_start

log = structlog.get_logger(__name__, component="SCHEDULER")

CHUNK = 2000
IN_FLIGHT = 3
SLOT_TTL_S = 2 * 86_400

ConnRow = Row[*tuple[Any, ...]]


class FanoutStats(TypedDict):
    """What one fan-out did: ``skipped`` counts connections per reason."""

    mode: str
    slot: str
    enqueued: int
    skipped: dict[str, int]
    failed: int
    follow_up: str | None


def slot_for(tick: str | None) -> str:
    """The fan-out slot: the tick's time (or now's 15-minute slot) as YYYYmmddHHMM."""
    at = datetime.fromisoformat(tick) if tick else slot_start(datetime.now(UTC))
    return at.astimezone(UTC).strftime("%Y%m%d%H%M")


def spread_s(connection_id: uuid.UUID, spread: float) -> float:
    """A stable start offset in ``[0, spread)`` per connection, so starts are spread evenly."""
    return spread * (connection_id.int % 1000) / 1000 if spread > 0 else 0.0


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
            await redis.exists(keys.arq_in_progress(job_id)) or await redis.exists(keys.arq_job(job_id))
        ):
            continue
        if await active_job(redis, str(connection_id)):
            continue
        async with session_scope() as session:
            if await status.repair(session, connection_id, job_id):
                repaired += 1
                log.warning("connection_repaired", connection_id=str(connection_id), job_id=job_id)
    return repaired


def _skip_reason(row: ConnRow, mode: SyncMode, registry: Registry, now: datetime) -> str | None:
    if row.status != ConnectionStatus.active:
        return str(row.status)  # paused / disconnected
    if row.sync_status == SyncStatus.reconnect_required:
        return "reconnect_required"
    if row.rate_limited_until is not None and row.rate_limited_until > now:
        return "rate_limited"
    if row.sync_status in BUSY:
        return "busy"
    provider = registry.providers.get(row.provider)
    if provider is None:
        return "provider_not_installed"
    if mode is SyncMode.realtime and not provider.capabilities.realtime:
        return "no_realtime"
    return None


# The last check that passed, per connection: (provider, stored ciphertexts, expiry). A check
# depends only on the tokens and on the expiry against now (HOOKS.md: check_credentials), so while
# the stored row is unchanged and its expiry has not passed, it passes again without decrypting
# (Fernet-decrypting every token was over half of a fan-out's CPU). Ciphertexts only, never tokens.
_PASSED: dict[uuid.UUID, tuple[Any, ...]] = {}
_PASSED_MAX = 500_000


def _token_problem(
    row: ConnRow, registry: Registry, cipher: MultiFernet, now: datetime
) -> tuple[str, str] | None:
    """(reason, message) when the stored tokens cannot work; checked offline, no network."""
    stored = (row.provider, row.access_token_enc, row.refresh_token_enc, row.expires_at)
    if _PASSED.get(row.id) == stored and (row.expires_at is None or row.expires_at > now):
        return None
    try:
        creds = Credentials(
            decrypt(row.access_token_enc, cipher), decrypt(row.refresh_token_enc, cipher), row.expires_at
        )
        registry.providers[row.provider].check_credentials(creds)
    except AuthError as exc:
        _PASSED.pop(row.id, None)
        return "invalid_token", exc.message
    except MetricxError as exc:
        _PASSED.pop(row.id, None)
        return "credentials_error", exc.message
    if len(_PASSED) >= _PASSED_MAX:
        _PASSED.clear()
    _PASSED[row.id] = stored
    return None


# Built once: the statement is the same every page (only where it starts differs).
_PAGE = (
    select(
        Connection.id,
        Connection.workspace_id,
        Connection.provider,
        Connection.status,
        Connection.sync_status,
        Connection.rate_limited_until,
        # As the driver returns it (a list of str): SQLAlchemy's ARRAY result processor walked
        # every row's list, half of this query's cost at 10,000 connections.
        type_coerce(Connection.throttle_scopes, NullType()).label("throttle_scopes"),
        Credential.access_token_enc,
        Credential.refresh_token_enc,
        Credential.expires_at,
    )
    .outerjoin(Credential, Credential.connection_id == Connection.id)
    .order_by(Connection.id)
    .limit(CHUNK)
)
_NEXT_PAGE = _PAGE.where(Connection.id > bindparam("after", type_=Connection.id.type))


async def _page(after: uuid.UUID | None) -> Sequence[ConnRow]:
    query, params = (_PAGE, {}) if after is None else (_NEXT_PAGE, {"after": after})
    async with session_scope() as session:
        # Core rows (no ORM loading): this runs for every connection every 15 minutes.
        return (await (await session.connection()).execute(query, params)).all()


async def _claim(
    due: list[ConnRow], invalid: list[tuple[uuid.UUID, str]], mode: SyncMode, slot: str
) -> list[ConnRow]:
    """Mark bad tokens ``reconnect_required`` and claim the due rows as ``queued``; returns the claimed."""
    async with session_scope() as session:
        for connection_id, message in invalid:
            await status.mark_failed(
                session,
                connection_id,
                sync_status=SyncStatus.reconnect_required,
                kind="auth",
                message=message,
            )
        ids = await status.claim_due(session, [r.id for r in due], mode.value, slot)
    return [r for r in due if r.id in ids]


async def _unclaim(rows: list[ConnRow]) -> None:
    """Give connections whose job was not enqueued their previous status back."""
    if not rows:
        return
    async with session_scope() as session:
        await status.unclaim_due(session, {r.id: r.sync_status for r in rows})


class _Pass:
    """One fan-out pass's running totals."""

    def __init__(self, mode: SyncMode, slot: str) -> None:
        self.mode = mode
        self.slot = slot
        self.skipped: Counter[str] = Counter()
        self.enqueued = 0
        self.failed = 0


async def _fan_out_page(
    rows: Sequence[ConnRow], acc: _Pass, ctx: dict[str, Any], cipher: MultiFernet, now: datetime
) -> None:
    settings: Settings = ctx["settings"]
    registry: Registry = ctx["registry"]
    redis: Redis = ctx["redis"]
    slot_key = keys.fanout_slot(acc.mode.value, acc.slot)
    done = await redis.smismember(slot_key, [str(r.id) for r in rows])  # type: ignore[misc]
    due: list[ConnRow] = []
    invalid: list[tuple[uuid.UUID, str]] = []
    for row, already in zip(rows, done, strict=True):
        reason = "already_enqueued" if already else _skip_reason(row, acc.mode, registry, now)
        if reason is None and (problem := _token_problem(row, registry, cipher, now)):
            reason = problem[0]
            if reason == "invalid_token":
                invalid.append((row.id, problem[1]))
        if reason:
            acc.skipped[reason] += 1
        else:
            due.append(row)
    due, limited = await skip_blocked(redis, due)  # a scope it shares is throttled (e.g. its app)
    acc.skipped["rate_limited"] += limited
    claimed = await _claim(due, invalid, acc.mode, acc.slot)
    acc.skipped["busy"] += len(due) - len(claimed)
    requests = _sync_requests(claimed, acc.mode, acc.slot, settings.fanout_spread_s)
    try:
        # The slot record is written in the same atomic call (enqueue_many's record_in).
        results = await enqueue_many(redis, requests, record_in=slot_key, record_ttl_s=SLOT_TTL_S)
    except (RedisError, OSError) as exc:
        log.error("fanout_enqueue_failed", mode=acc.mode.value, count=len(claimed), error=str(exc)[:200])
        acc.failed += len(claimed)
        await _unclaim(claimed)
        return
    await _settle(claimed, results, acc)


def _sync_requests(rows: list[ConnRow], mode: SyncMode, slot: str, spread: float) -> list[JobRequest]:
    """What :func:`core.enqueue.sync_request` builds for each row, without its per-row overhead."""
    sample = sync_request("c", "w", mode, slot=slot)
    function, kwargs = sample.function, sample.kwargs
    head, tail = f"{SYNC_JOB_PREFIX}:", f":{mode.value}:{slot}"
    requests = []
    for r in rows:
        cid = str(r.id)
        requests.append(
            JobRequest(
                function, head + cid + tail, (cid, str(r.workspace_id)), kwargs, spread_s(r.id, spread), cid
            )
        )
    return requests


async def _settle(claimed: list[ConnRow], results: list[EnqueueResult], acc: _Pass) -> None:
    """Count the enqueued; point claims another sync holds at its job; give back the rest."""
    held: list[tuple[uuid.UUID, str | None]] = []
    lost: list[ConnRow] = []
    enqueued = 0
    for row, result in zip(claimed, results, strict=True):
        if result["status"] == "enqueued":
            enqueued += 1
        elif result["job_id"] != SyncJobId(str(row.id), acc.mode.value, acc.slot).format():
            held.append((row.id, result["job_id"]))  # another sync (e.g. a manual backfill) holds it
        else:
            lost.append(row)  # this slot's job already ran: nothing to do
    acc.enqueued += enqueued
    acc.skipped["busy"] += len(held)
    acc.skipped["already_enqueued"] += len(lost)
    if held:
        async with session_scope() as session:
            await status.point_to_jobs(session, dict(held))
    await _unclaim(lost)


async def _run_pages(acc: _Pass, ctx: dict[str, Any], cipher: MultiFernet, now: datetime) -> None:
    """Page through every connection, a few pages in flight at once.

    Checking tokens is CPU work in this process while claiming and enqueueing
    wait on PostgreSQL and Redis: overlapping pages keeps all three busy. At
    most ``IN_FLIGHT`` pages are held, so memory stays flat however many
    connections there are.
    """
    in_flight: deque[asyncio.Task[None]] = deque()
    next_page = asyncio.create_task(_page(None))
    try:
        while rows := await next_page:
            next_page = asyncio.create_task(_page(rows[-1].id))
            in_flight.append(asyncio.create_task(_fan_out_page(rows, acc, ctx, cipher, now)))
            if len(in_flight) >= IN_FLIGHT:
                await in_flight.popleft()
        while in_flight:
            await in_flight.popleft()
    finally:
        for task in (next_page, *in_flight):
            task.cancel()


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection during a pass (reference counting still frees everything).

    A 10,000-connection pass allocates a few hundred thousand short-lived objects (rows, job
    requests, payloads): that triggered ~120 young collections and one or two full ones, each
    re-scanning the pages in flight, 18-37 ms of the pass's ~150 ms of CPU, to find little cyclic
    garbage. It is collected at the next collection after the pass. If the collector was already
    off (another pass running alongside), it is left to whoever turned it off.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


async def fan_out(ctx: dict[str, Any], mode: SyncMode, tick: str | None) -> FanoutStats:
    """Enqueue ``process_sync_job`` in ``mode`` for every due connection; return the stats."""
    await repair_stuck(ctx)
    acc = _Pass(mode, slot_for(tick))
    now = datetime.now(UTC)
    cipher = get_cipher(ctx["settings"])
    with _gc_paused():
        await _run_pages(acc, ctx, cipher, now)
    follow_up = None
    if mode is SyncMode.attribution and acc.skipped["busy"]:
        follow_up = await _follow_up(ctx, acc)
    stats: FanoutStats = {
        "mode": mode.value,
        "slot": acc.slot,
        "enqueued": acc.enqueued,
        "skipped": {reason: n for reason, n in sorted(acc.skipped.items()) if n},
        "failed": acc.failed,
        "follow_up": follow_up,
    }
    log.info("fanout_finished", **stats)
    return stats


async def _follow_up(ctx: dict[str, Any], acc: _Pass) -> str | None:
    """Re-run the attribution fan-out later for the connections that were busy (bounded passes)."""
    settings: Settings = ctx["settings"]
    redis: Redis = ctx["redis"]
    key = keys.fanout_passes(acc.mode.value, acc.slot)
    passes = int(await redis.incr(key))
    await redis.expire(key, SLOT_TTL_S)
    if passes > settings.fanout_max_passes:
        log.warning("fanout_busy_given_up", mode=acc.mode.value, slot=acc.slot, busy=acc.skipped["busy"])
        return None
    tick = datetime.strptime(acc.slot, "%Y%m%d%H%M").replace(tzinfo=UTC).isoformat()
    job_id = f"{keys.CRON_JOB_PREFIX}{acc.mode.value}_sync:{tick}:pass{passes + 1}"
    request = JobRequest(
        "scheduled_attribution_sync", job_id, kwargs={"tick": tick}, defer_s=settings.fanout_retry_s
    )
    await enqueue_many(redis, [request])
    return job_id
