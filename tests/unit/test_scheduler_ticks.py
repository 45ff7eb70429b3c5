"""Tick arithmetic of the scheduler with an injected clock: fire times, coalescing, lateness, entries."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.config import Settings
from core.cron import cron_job_id, decide, describe, latest_fire, load_entries, next_fire
from core.errors import ConfigError
from core.plugins import Registry
from core.providers import JobSpec, ScheduleEntry
from core.scheduler import startup_lines

T0 = datetime(2030, 3, 1, 10, 0, tzinfo=UTC)


def at(**delta: float) -> datetime:
    return T0 + timedelta(**delta)


def test_latest_fire_includes_an_exact_fire_time() -> None:
    assert latest_fire("*/15 * * * *", at(minutes=15)) == at(minutes=15)
    assert latest_fire("*/15 * * * *", at(minutes=29, seconds=59)) == at(minutes=15)
    assert next_fire("*/15 * * * *", at(minutes=15)) == at(minutes=30)
    assert latest_fire("0 3 * * *", at(hours=1)) == datetime(2030, 3, 1, 3, tzinfo=UTC)


def test_six_fields_are_seconds() -> None:
    assert latest_fire("* * * * * */2", at(seconds=5)) == at(seconds=4)
    assert next_fire("* * * * * */2", at(seconds=4)) == at(seconds=6)


def test_a_tick_is_enqueued_once_then_not_again() -> None:
    assert decide("*/15 * * * *", None, at(seconds=3), 3600) == ("enqueue", T0)
    assert decide("*/15 * * * *", T0, at(minutes=14, seconds=59), 3600) is None
    assert decide("*/15 * * * *", T0, at(minutes=15), 3600) == ("enqueue", at(minutes=15))


def test_missed_ticks_coalesce_into_the_latest_one() -> None:
    # Down from 10:00 to 12:07: eight realtime ticks missed, one is run (12:00).
    assert decide("*/15 * * * *", T0, at(hours=2, minutes=7), 3600) == ("enqueue", at(hours=2))


def test_a_tick_later_than_the_allowed_lateness_is_skipped() -> None:
    # Compaction at 01:00, scheduler back at 10:00 with one hour allowed: skipped, not run late.
    assert decide("0 1 * * *", None, T0, 3600) == ("late", datetime(2030, 3, 1, 1, tzinfo=UTC))
    assert decide("0 1 * * *", None, datetime(2030, 3, 1, 1, 40, tzinfo=UTC), 3600) == (
        "enqueue",
        datetime(2030, 3, 1, 1, tzinfo=UTC),
    )


def test_a_daily_tick_missed_by_two_hours_runs_once_when_the_scheduler_is_back() -> None:
    # Attribution at 03:00; the scheduler was down 02:20-05:00 with its last tick the day before.
    yesterday = datetime(2030, 2, 28, 3, tzinfo=UTC)
    back = datetime(2030, 3, 1, 5, 0, tzinfo=UTC)
    tick = datetime(2030, 3, 1, 3, tzinfo=UTC)
    assert decide("0 3 * * *", yesterday, back, 3600) == ("enqueue", tick)
    assert decide("0 3 * * *", tick, back + timedelta(minutes=1), 3600) is None
    # Back a whole day later: still once, the latest missed tick only.
    assert decide("0 3 * * *", yesterday, datetime(2030, 3, 2, 9, tzinfo=UTC), 3600) == (
        "enqueue",
        datetime(2030, 3, 2, 3, tzinfo=UTC),
    )


def test_simulated_hours_with_a_jittery_loop_enqueues_every_tick_exactly_once() -> None:
    """A loop waking at irregular times (as asyncio does) against the recorded last tick."""
    now, last = T0, None
    enqueued: list[datetime] = []
    step = 0
    while now < T0 + timedelta(hours=6):
        decision = decide("*/15 * * * *", last, now, 60)
        if decision:
            assert decision[0] == "enqueue"
            enqueued.append(decision[1])
            last = decision[1]
        step += 1
        now += timedelta(seconds=0.5 + (step * 7919 % 50) / 10)
    assert enqueued == [T0 + timedelta(minutes=15 * i) for i in range(24)]


def test_job_ids_are_deterministic_per_entry_and_tick() -> None:
    tick = datetime(2030, 3, 1, 10, 15, tzinfo=UTC)
    assert cron_job_id("realtime_sync", tick) == "cron:realtime_sync:2030-03-01T10:15:00+00:00"
    assert cron_job_id("realtime_sync", tick.astimezone()) == cron_job_id("realtime_sync", tick)


def test_startup_lines_are_the_seeds() -> None:
    settings = Settings(queue_name="arq:queue")
    lines = startup_lines(load_entries(settings, Registry()), settings)
    assert lines[:5] == [
        "[SCHEDULER] Starting ARQ scheduler...",
        "[SCHEDULER] Cron jobs:",
        "  - realtime_sync: */15 * * * * (every 15 min)",
        "  - attribution_sync: 0 3 * * * (daily 3am)",
        "  - compaction: 0 1 * * * (daily 1am)",
    ]


@pytest.mark.parametrize(
    ("cron", "meaning"),
    [("*/5 * * * *", "every 5 min"), ("30 14 * * *", "daily 14:30"), ("0 */6 * * *", "every 6 hours")],
)
def test_overridden_crons_are_described(cron: str, meaning: str) -> None:
    assert describe(cron) == meaning


async def _job_with_tick(ctx: dict[str, Any], tick: str | None = None) -> None: ...


async def _job_without_tick(ctx: dict[str, Any]) -> None: ...


def plugin_registry(*entries: ScheduleEntry) -> Registry:
    registry = Registry()
    registry.jobs["shop.sync"] = JobSpec("shop.sync", _job_without_tick)
    registry.jobs["shop.report"] = JobSpec("shop.report", _job_with_tick)
    for entry in entries:
        registry.schedules.append(entry)
        registry.schedule_owner[entry.name] = "shop"
    return registry


def test_plugin_entries_run_at_their_own_cadence() -> None:
    registry = plugin_registry(
        ScheduleEntry("shop.sync", "0 */6 * * *", "shop.sync", kwargs={"full": False}),
        ScheduleEntry("shop.report", "5 4 * * *", "shop.report", description="nightly report"),
    )
    jobs = {j.name: j for j in load_entries(Settings(), registry)}
    assert set(jobs) == {
        "realtime_sync",
        "attribution_sync",
        "compaction",
        "reconcile",
        "token_upkeep",
        "shop.sync",
        "shop.report",
    }
    assert (jobs["shop.sync"].meaning, jobs["shop.sync"].pass_tick) == ("every 6 hours", False)
    assert (jobs["shop.report"].meaning, jobs["shop.report"].pass_tick) == ("nightly report", True)
    assert jobs["realtime_sync"].pass_tick


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (ScheduleEntry("shop.sync", "every day", "shop.sync"), "invalid cron expression 'every day'"),
        (ScheduleEntry("shop.x", "0 * * * *", "shop.missing"), "'shop.missing', which no plugin registers"),
        (ScheduleEntry("compaction", "0 * * * *", "shop.sync"), "clashes with a core schedule entry"),
    ],
)
def test_bad_entries_stop_start_up_with_a_clear_message(entry: ScheduleEntry, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_entries(Settings(), plugin_registry(entry))


def test_a_bad_core_cron_setting_is_reported() -> None:
    with pytest.raises(ConfigError, match=r"'realtime_sync' .*'15 minutes'"):
        load_entries(Settings(cron_realtime="15 minutes"), Registry())
