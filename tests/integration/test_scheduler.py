"""The singleton scheduler as real ``python -m core.scheduler`` / ``metricx scheduler`` processes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgpack
import pytest

from core.config import get_settings
from core.cron import latest_fire, load_entries
from core.scheduler import LAST_TICKS_PREFIX, LEASE_PREFIX, Scheduler
from core.testing.plugin import ManagedProcess

pytestmark = pytest.mark.slow

FAST = {
    "METRICX_CRON_REALTIME": "* * * * * */2",
    # Daily entries whose last fire is far beyond the allowed lateness: recorded as skipped, not run.
    "METRICX_CRON_ATTRIBUTION": "0 0 1 1 *",
    "METRICX_CRON_COMPACTION": "0 0 1 1 *",
    "METRICX_CRON_RECONCILE": "0 0 1 1 *",
    "METRICX_CRON_TOKEN_UPKEEP": "0 0 1 1 *",
    "METRICX_SCHEDULER_MAX_LATENESS_S": "5",
    "METRICX_SCHEDULER_LEASE_S": "1.5",
    "METRICX_SCHEDULER_POLL_S": "0.1",
}


class SchedulerProcess(ManagedProcess):
    """A real scheduler process writing its output to a file."""

    name = "scheduler"

    def enqueued(self) -> list[str]:
        return [
            line.rsplit(": ", 1)[1]
            for line in self.output().splitlines()
            if line.startswith("[SCHEDULER] Enqueued ")
        ]

    def stop(self, sig: int | None = signal.SIGTERM) -> int:
        return super().stop(sig)


@pytest.fixture
async def queue(redis_client: Any) -> Any:
    """A queue (and so a lease and tick record) of this test's own, removed afterwards with its jobs.

    arq's job keys are global, not per queue: a tick enqueued here (``cron:realtime_sync:<tick>``)
    would otherwise make a later test's scheduler see that tick as already enqueued. Ticks other
    tests' schedulers left (test_metrics, the demo, the fault stack), and their results where a
    worker ran them, are removed first, for the same reason: one of the same 5-minute slot made this
    test's scheduler skip its tick.
    """
    name = f"arq:queue:sched:{uuid.uuid4().hex[:8]}"
    # a tick's job, or its result once a worker ran it (kept for an hour), makes it "already enqueued"
    left = [
        key
        for prefix in ("arq:job:cron:*", "arq:result:cron:*", "arq:in-progress:cron:*", "arq:retry:cron:*")
        async for key in redis_client.scan_iter(match=prefix)
    ]
    if left:
        await redis_client.delete(*left)
    yield name
    job_ids = [m.decode() for m in await redis_client.zrange(name, 0, -1)]
    keys = [f"arq:job:{j}" for j in job_ids] + [name, LAST_TICKS_PREFIX + name, LEASE_PREFIX + name]
    await redis_client.delete(*keys)


@pytest.fixture
def start_scheduler(metricx_env: Any, tmp_path: Path, queue: str) -> Any:
    started: list[SchedulerProcess] = []

    def start(*, cli: bool = False, **overrides: str) -> SchedulerProcess:
        env = {**os.environ, **metricx_env.env, "METRICX_QUEUE_NAME": queue, **overrides}
        command = (
            [str(Path(sys.executable).parent / "metricx"), "scheduler"]
            if cli
            else [sys.executable, "-m", "core.scheduler"]
        )
        proc = SchedulerProcess(command, env, tmp_path / f"scheduler-{len(started)}.log")
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop(signal.SIGKILL)


async def cron_jobs(redis_client: Any, queue: str) -> list[str]:
    return sorted(m.decode() for m in await redis_client.zrange(queue, 0, -1) if m.startswith(b"cron:"))


def ticks_of(job_ids: list[str]) -> list[datetime]:
    return sorted(datetime.fromisoformat(j.split(":", 2)[2]) for j in job_ids)


async def test_two_schedulers_enqueue_each_tick_once_and_the_standby_takes_over(
    start_scheduler: Any, redis_client: Any, queue: str
) -> None:
    first, second = start_scheduler(**FAST), start_scheduler(**FAST)
    for proc in (first, second):
        proc.wait_for("[SCHEDULER] Queue:")
    deadline = time.monotonic() + 10
    while not any("Leader:" in p.output() for p in (first, second)) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    leader, standby = (first, second) if "Leader:" in first.output() else (second, first)
    standby.wait_for("[SCHEDULER] Standby:")
    await asyncio.sleep(9)  # about four ticks with both alive

    leader.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    standby.wait_for("[SCHEDULER] Leader:", timeout_s=1.5 + 3)
    takeover_s = time.monotonic() - killed_at
    await asyncio.sleep(9)
    assert standby.stop() == 0

    jobs = await cron_jobs(redis_client, queue)
    logged = leader.enqueued() + standby.enqueued()
    # none doubled: every enqueue any process reports is a distinct job, and each is in the queue once
    assert sorted(logged) == jobs
    assert [j for j, n in Counter(logged).items() if n > 1] == []
    # none lost: the ticks are every two seconds with no hole, across the failover
    ticks = ticks_of(jobs)
    assert len(ticks) >= 7
    assert ticks == [ticks[0] + timedelta(seconds=2 * i) for i in range(len(ticks))]
    assert leader.enqueued() and standby.enqueued()
    assert all(j.startswith("cron:realtime_sync:") for j in jobs)
    assert takeover_s < 1.5 + 3


async def test_a_scheduler_started_after_a_gap_runs_the_missed_tick_once(
    start_scheduler: Any, redis_client: Any, queue: str
) -> None:
    cron = "*/5 * * * *"
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    # The last scheduler enqueued a tick an hour ago, then nothing ran: eleven ticks were missed.
    await redis_client.hset(
        LAST_TICKS_PREFIX + queue, "realtime_sync", int(latest_fire(cron, an_hour_ago).timestamp() * 1000)
    )
    started_at = datetime.now(UTC)
    proc = start_scheduler(METRICX_CRON_REALTIME=cron, METRICX_SCHEDULER_POLL_S="0.1")
    proc.wait_for("[SCHEDULER] Enqueued scheduled_realtime_sync")
    await asyncio.sleep(2)
    stopped_at = datetime.now(UTC)
    assert proc.stop() == 0

    realtime = [j for j in await cron_jobs(redis_client, queue) if j.startswith("cron:realtime_sync:")]
    missed = latest_fire(cron, started_at)
    fired_since = [t for t in (latest_fire(cron, stopped_at),) if t > started_at]
    assert ticks_of(realtime) == [missed, *fired_since]
    # the job carries its tick, as the fan-out needs it for the slot
    raw = await redis_client.get(f"arq:job:cron:realtime_sync:{missed.isoformat()}")
    job = msgpack.unpackb(raw, raw=False)
    assert (job["f"], job["k"]) == ("scheduled_realtime_sync", {"tick": missed.isoformat()})


async def test_metricx_scheduler_prints_the_seed_lines_and_hands_over_on_exit(
    start_scheduler: Any, redis_client: Any, queue: str
) -> None:
    first = start_scheduler(cli=True)
    first.wait_for("[SCHEDULER] Leader:")
    second = start_scheduler(METRICX_SCHEDULER_POLL_S="0.2")
    second.wait_for("[SCHEDULER] Standby:")
    lines = first.output().splitlines()
    assert lines[:5] == [
        "[SCHEDULER] Starting ARQ scheduler...",
        "[SCHEDULER] Cron jobs:",
        "  - realtime_sync: */15 * * * * (every 15 min)",
        "  - attribution_sync: 0 3 * * * (daily 3am)",
        "  - compaction: 0 1 * * * (daily 1am)",
    ]
    assert f"[SCHEDULER] Queue: {queue}" in lines

    # A clean exit releases the 30-second lease at once: the standby leads long before it would lapse.
    assert first.stop() == 0
    assert "[SCHEDULER] Stopped" in first.output()
    second.wait_for("[SCHEDULER] Leader:", timeout_s=10)
    assert second.stop() == 0
    assert await redis_client.exists(LEASE_PREFIX + queue) == 0


async def test_a_scheduler_that_lost_its_lease_cannot_enqueue(redis_client: Any, queue: str) -> None:
    """Split brain (a leader paused past its lease): the stale one's enqueues are fenced off."""
    settings = get_settings().model_copy(
        update={"queue_name": queue, "scheduler_lease_s": 30.0, "cron_realtime": "*/15 * * * *"}
    )
    jobs = [j for j in load_entries(settings, _empty_registry()) if j.name == "realtime_sync"]
    clock = datetime(2030, 1, 1, 10, 15, 5, tzinfo=UTC)
    stale = Scheduler(redis_client, jobs, settings, clock=lambda: clock, out=lambda _: None)
    fresh = Scheduler(redis_client, jobs, settings, clock=lambda: clock, out=lambda _: None)
    await stale.tend_lease()
    assert stale.leader
    await redis_client.delete(stale.lease.key)  # the lease lapsed while it was paused
    await fresh.tend_lease()
    assert fresh.leader

    assert await stale.step() == []
    assert not stale.leader
    assert await fresh.step() == ["cron:realtime_sync:2030-01-01T10:15:00+00:00"]
    assert await fresh.step() == []
    assert await cron_jobs(redis_client, queue) == ["cron:realtime_sync:2030-01-01T10:15:00+00:00"]
    await fresh.lease.release()


async def test_a_missed_daily_tick_runs_once_and_a_redis_data_loss_does_not_run_it_again(
    redis_client: Any, queue: str
) -> None:
    settings = get_settings().model_copy(
        update={"queue_name": queue, "scheduler_lease_s": 30.0, "cron_attribution": "0 3 * * *"}
    )
    jobs = [j for j in load_entries(settings, _empty_registry()) if j.name == "attribution_sync"]
    # Attribution last ran yesterday at 03:00; the scheduler was down from 02:20 to 05:00 today.
    yesterday = datetime(2030, 1, 1, 3, tzinfo=UTC)
    await redis_client.hset(LAST_TICKS_PREFIX + queue, "attribution_sync", int(yesterday.timestamp() * 1000))
    clock = datetime(2030, 1, 2, 5, 0, tzinfo=UTC)
    tick_id = "cron:attribution_sync:2030-01-02T03:00:00+00:00"
    first = Scheduler(redis_client, jobs, settings, clock=lambda: clock, out=lambda _: None)
    await first.tend_lease()
    assert await first.step() == [tick_id]
    assert await first.step() == []
    await first.lease.release()

    # Redis comes back empty (no persistence): no tick record, no job, no result.
    await redis_client.delete(LAST_TICKS_PREFIX + queue, queue, f"arq:job:{tick_id}")
    second = Scheduler(redis_client, jobs, settings, clock=lambda: clock, out=lambda _: None)
    await second.tend_lease()
    assert await second.step() == []  # PostgreSQL remembers the 03:00 tick
    assert await cron_jobs(redis_client, queue) == []
    later = Scheduler(
        redis_client,
        jobs,
        settings,
        clock=lambda: datetime(2030, 1, 3, 3, 0, 1, tzinfo=UTC),
        out=lambda _: None,
    )
    later.leader, later.lease = True, second.lease
    assert await later.step() == ["cron:attribution_sync:2030-01-03T03:00:00+00:00"]
    await second.lease.release()


def _empty_registry() -> Any:
    from core.plugins import Registry

    return Registry()


async def test_the_leader_checks_api_sunsets_once_a_day(redis_client: Any, queue: str) -> None:
    from datetime import date

    from core import ApiVersion

    class Retiring:
        name = "retiring"
        api_version = ApiVersion("v7", date(2030, 2, 1))

    settings = get_settings().model_copy(update={"queue_name": queue, "cron_realtime": "*/15 * * * *"})
    jobs = [j for j in load_entries(settings, _empty_registry()) if j.name == "realtime_sync"]
    clock = datetime(2030, 1, 1, 10, 0, 5, tzinfo=UTC)
    scheduler = Scheduler(
        redis_client,
        jobs,
        settings,
        clock=lambda: clock,
        out=lambda _: None,
        providers={"retiring": Retiring()},  # type: ignore[dict-item]
    )
    assert [n.days_left for n in scheduler.check_api_sunsets(clock.date())] == [31]
    assert scheduler.check_api_sunsets(clock.date()) == []  # once a day, not once a tick
    await scheduler.tend_lease()
    await scheduler.step()  # the same day: no second warning
    assert scheduler.check_api_sunsets(clock.date()) == []
    clock += timedelta(days=1)
    await scheduler.step()  # the next day's first step warns again
    assert scheduler.check_api_sunsets(clock.date()) == []
    assert [n.days_left for n in scheduler.check_api_sunsets(clock.date() + timedelta(days=1))] == [29]
    await scheduler.lease.release()
