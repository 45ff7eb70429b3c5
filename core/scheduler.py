"""The singleton scheduler: ``python -m core.scheduler`` (or ``metricx scheduler``) enqueues cron ticks.

It only enqueues; workers run the jobs. Singleton by construction:

- a Redis lease (``SET NX PX``, renewed every third of its life, released on a
  clean exit) makes one process the leader; the others wait as standbys and
  take over when the lease lapses;
- every tick is enqueued by one Lua call that is fenced by the lease, records
  the entry's last tick and uses the job id ``cron:{name}:{tick}``, so even two
  processes that both believe they lead cannot enqueue one tick twice.

Fire times come from the cron expressions (croniter, UTC; a sixth field means
seconds). A tick missed while no scheduler ran is enqueued once on start
(coalesced: only the latest missed one), however late within its period (a
daily tick missed by two hours runs when the scheduler is back); only on a
first start, with no tick recorded, is one more than
``scheduler_max_lateness_s`` late skipped. The last tick per entry is kept in
Redis (atomically with the enqueue) and in PostgreSQL, so losing Redis's data
does not run a tick twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

import core.keys as keys
import core.scheduler_ticks as tick_store
from core.config import Settings, get_settings
from core.cron import Action, CronJob, cron_job_id, decide, load_entries, next_fire
from core.enqueue import Fence, JobRequest, enqueue_tick
from core.errors import MetricxError
from core.lifecycle import SunsetNotice, warn_sunsets
from core.metrics import SCHEDULER, scheduler_is_leader, scheduler_ticks, serve_registry
from core.providers import Provider

log = structlog.get_logger(__name__, component="SCHEDULER")

LEASE_PREFIX = keys.SCHEDULER_LEASE_PREFIX
LAST_TICKS_PREFIX = keys.SCHEDULER_LAST_TICKS_PREFIX

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# --- the lease -----------------------------------------------------------------------------------


class Lease:
    """Leadership as a Redis key holding this process's token, with an expiry."""

    def __init__(self, redis: Redis, key: str, ttl_s: float, token: str | None = None) -> None:
        self.redis = redis
        self.key = key
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.token = token or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it."""
        return bool(await self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms))

    async def renew(self) -> bool:
        """Extend the lease; False if it lapsed and someone else (or nobody) holds it."""
        return bool(await self.redis.eval(_RENEW, 1, self.key, self.token, str(self.ttl_ms)))  # type: ignore[misc]

    async def release(self) -> None:
        """Give the lease up at once so a standby takes over without waiting for the expiry."""
        await self.redis.eval(_RELEASE, 1, self.key, self.token)  # type: ignore[misc]

    async def holder(self) -> str | None:
        value = await self.redis.get(self.key)
        return value.decode() if isinstance(value, bytes) else value


# --- the scheduler -------------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    """Leader election plus tick enqueueing; ``clock`` and ``out`` are injectable for tests."""

    def __init__(
        self,
        redis: Redis,
        jobs: Sequence[CronJob],
        settings: Settings,
        *,
        clock: Callable[[], datetime] = _utcnow,
        out: Callable[[str], None] | None = None,
        providers: Mapping[str, Provider] | None = None,
        ticks_in_db: bool = True,
    ) -> None:
        self.redis = redis
        self.providers = dict(providers or {})
        self._sunsets_checked_on: date | None = None
        self.jobs = list(jobs)
        self.settings = settings
        self.clock = clock
        self.out = out or (lambda line: print(line, flush=True))
        self.queue = settings.queue_name
        self.lease = Lease(redis, LEASE_PREFIX + self.queue, settings.scheduler_lease_s)
        self.last_key = LAST_TICKS_PREFIX + self.queue
        self.leader = False
        self.ticks_in_db = ticks_in_db

    async def last_ticks(self, now: datetime | None = None) -> dict[str, datetime]:
        """The last tick handled per entry: the later of Redis's record and PostgreSQL's.

        PostgreSQL is read only when Redis's record says some entry is due at ``now``
        (a restart, a tick, or a Redis that lost or rolled back its data), not on every poll.
        """
        raw = await self.redis.hgetall(self.last_key)  # type: ignore[misc]
        in_redis = {
            (k.decode() if isinstance(k, bytes) else k): datetime.fromtimestamp(int(v) / 1000, UTC)
            for k, v in raw.items()
        }
        if not self.ticks_in_db:
            return in_redis
        if now is not None and all(
            decide(j.cron, in_redis.get(j.name), now, self.settings.scheduler_max_lateness_s) is None
            for j in self.jobs
        ):
            return in_redis
        return tick_store.merge(in_redis, await tick_store.load(self.queue))

    async def step(self) -> list[str]:
        """One pass over the entries as leader; returns the job ids it enqueued."""
        now = self.clock()
        self.check_api_sunsets(now.date())
        last = await self.last_ticks(now)
        enqueued: list[str] = []
        for job in self.jobs:
            decision = decide(job.cron, last.get(job.name), now, self.settings.scheduler_max_lateness_s)
            if decision is None:
                continue
            action, tick = decision
            result = await self._record(job, tick, action)
            if result < 0:
                self._lost_lease()
                break
            if self.ticks_in_db:
                await tick_store.record(self.queue, job.name, tick)
            job_id = cron_job_id(job.name, tick)
            late_s = round((now - tick).total_seconds(), 3)
            if action == "late":
                log.warning("tick_skipped_late", entry=job.name, job_id=job_id, late_s=late_s)
            elif result == 1:
                enqueued.append(job_id)
                scheduler_ticks.labels(job.name).inc()
                log.info("tick_enqueued", entry=job.name, job=job.job, job_id=job_id, late_s=late_s)
                self.out(f"[SCHEDULER] Enqueued {job.job}: {job_id}")
            else:  # another scheduler (or a restart) already enqueued this tick
                log.info("tick_already_enqueued", entry=job.name, job_id=job_id)
        return enqueued

    def check_api_sunsets(self, today: date) -> list[SunsetNotice]:
        """Once per UTC day, as leader: warn about providers whose API version sunsets soon (or did)."""
        if self._sunsets_checked_on == today:
            return []
        self._sunsets_checked_on = today
        return warn_sunsets(self.providers, today)

    async def _record(self, job: CronJob, tick: datetime, action: Action) -> int:
        kwargs = {**job.kwargs, **({"tick": tick.isoformat()} if job.pass_tick else {})}
        return await enqueue_tick(
            self.redis,
            Fence(self.lease.key, self.lease.token),
            last_ticks_key=self.last_key,
            entry=job.name,
            tick_ms=int(tick.timestamp() * 1000),
            request=JobRequest(job.job, cron_job_id(job.name, tick), kwargs=kwargs),
            queue_name=self.queue,
            record_only=action != "enqueue",
        )

    def _lost_lease(self) -> None:
        if self.leader:
            log.warning("lease_lost", token=self.lease.token)
            self.out("[SCHEDULER] Lost the lease; standing by")
        self.leader = False
        scheduler_is_leader.set(0)

    async def tend_lease(self) -> None:
        """Become leader if the lease is free; as leader, renew it (or notice it is gone)."""
        if self.leader:
            if not await self.lease.renew():
                self._lost_lease()
            return
        if await self.lease.acquire():
            self.leader = True
            scheduler_is_leader.set(1)
            log.info("lease_acquired", token=self.lease.token, queue=self.queue)
            self.out(f"[SCHEDULER] Leader: enqueuing cron jobs on {self.queue}")

    def _sleep_s(self, renew_at: float) -> float:
        poll = self.settings.scheduler_poll_s
        if not self.leader:
            return poll
        now = self.clock()
        until_fire = min((next_fire(j.cron, now) - now).total_seconds() for j in self.jobs)
        until_renew = renew_at - time.monotonic()
        return max(0.01, min(poll, until_fire, until_renew))

    async def run(self, stop: asyncio.Event) -> None:
        """Lead or stand by until ``stop`` is set; then release the lease if held."""
        renew_every = self.settings.scheduler_lease_s / 3
        renew_at = 0.0
        announced_standby = False
        try:
            while not stop.is_set():
                try:
                    if time.monotonic() >= renew_at or not self.leader:
                        await self.tend_lease()
                        renew_at = time.monotonic() + renew_every
                    if self.leader:
                        announced_standby = False
                        await self.step()
                    elif not announced_standby:
                        announced_standby = True
                        holder = await self.lease.holder()
                        log.info("standing_by", holder=holder)
                        self.out(f"[SCHEDULER] Standby: another scheduler holds the lease ({holder})")
                except (RedisError, OSError) as exc:
                    log.warning("redis_unavailable", error=str(exc)[:200])
                try:
                    await asyncio.wait_for(stop.wait(), self._sleep_s(renew_at))
                except TimeoutError:
                    pass
        finally:
            if self.leader:
                await self.lease.release()
                self.leader = False
                scheduler_is_leader.set(0)
                log.info("lease_released", token=self.lease.token)


def startup_lines(jobs: Sequence[CronJob], settings: Settings) -> list[str]:
    """The seed's start-up lines, then the queue."""
    lines = ["[SCHEDULER] Starting ARQ scheduler...", "[SCHEDULER] Cron jobs:"]
    lines += [f"  - {job.name}: {job.cron} ({job.meaning})" for job in jobs]
    lines.append(f"[SCHEDULER] Queue: {settings.queue_name}")
    return lines


async def serve(
    settings: Settings, jobs: Sequence[CronJob], providers: Mapping[str, Provider] | None = None
) -> None:
    """Run the scheduler until SIGTERM / SIGINT; ``providers`` get the daily API sunset check."""
    from core.redis import create_arq_pool

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    redis = await create_arq_pool(settings)
    server = None
    if settings.scheduler_metrics_port is not None:
        server = serve_registry(SCHEDULER, settings.scheduler_metrics_port)
    try:
        await Scheduler(redis, jobs, settings, providers=providers).run(stop)
    finally:
        await redis.aclose()
        if server is not None:
            server.shutdown()
        from core.db.engine import dispose_engine

        await dispose_engine()
    print("[SCHEDULER] Stopped", flush=True)


def main() -> None:
    """``python -m core.scheduler``: print the cron entries, then lead or stand by until stopped."""
    from core.logging import configure_logging
    from core.plugins import get_registry
    from core.preflight import check_servers

    configure_logging()
    settings = get_settings()
    try:
        asyncio.run(check_servers(settings))
        registry = get_registry()
        jobs = load_entries(settings, registry)
    except MetricxError as exc:
        print(f"[SCHEDULER] error: {exc.message}", file=sys.stderr, flush=True)
        sys.exit(1)
    for line in startup_lines(jobs, settings):
        print(line, flush=True)
    asyncio.run(serve(settings, jobs, registry.providers))


if __name__ == "__main__":
    main()


__all__ = [
    "Lease",
    "Scheduler",
    "main",
    "serve",
    "startup_lines",
]
