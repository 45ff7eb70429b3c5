"""Cron entries and fire times: which entries the scheduler runs, when each fires, what to enqueue.

Pure functions of an expression and a clock (times are UTC; croniter reads a
sixth field as seconds), so the tick logic is tested without Redis or sleeping.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from croniter import croniter

from core.config import Settings
from core.errors import ConfigError
from core.keys import CRON_JOB_PREFIX
from core.plugins import Registry
from core.providers import ScheduleEntry

CORE_JOBS = (
    "scheduled_realtime_sync",
    "scheduled_attribution_sync",
    "scheduled_compaction",
    "scheduled_reconcile",
    "scheduled_token_upkeep",
)


@dataclass(frozen=True, slots=True)
class CronJob:
    """One cron entry as the scheduler runs it."""

    name: str
    cron: str
    job: str
    meaning: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    pass_tick: bool = True


def core_entries(settings: Settings) -> list[ScheduleEntry]:
    """The core's entries, each cron overridable by a setting."""
    return [
        ScheduleEntry("realtime_sync", settings.cron_realtime, "scheduled_realtime_sync"),
        ScheduleEntry("attribution_sync", settings.cron_attribution, "scheduled_attribution_sync"),
        ScheduleEntry("compaction", settings.cron_compaction, "scheduled_compaction"),
        ScheduleEntry("reconcile", settings.cron_reconcile, "scheduled_reconcile"),
        ScheduleEntry("token_upkeep", settings.cron_token_upkeep, "scheduled_token_upkeep"),
    ]


def _accepts_tick(function: Callable[..., Any]) -> bool:
    params = inspect.signature(function).parameters.values()
    return any(p.name == "tick" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def load_entries(settings: Settings, registry: Registry) -> list[CronJob]:
    """Core entries plus every plugin's, validated: a bad expression or unknown job stops start-up."""
    jobs: list[CronJob] = []
    for entry in [*core_entries(settings), *registry.schedules]:
        owner = registry.schedule_owner.get(entry.name, "core")
        if not croniter.is_valid(entry.cron):
            raise ConfigError(
                f"schedule {entry.name!r} ({owner}) has an invalid cron expression {entry.cron!r}; "
                "use five fields (minute hour day month weekday), or six with seconds last"
            )
        if any(j.name == entry.name for j in jobs):
            raise ConfigError(f"schedule {entry.name!r} from {owner} clashes with a core schedule entry")
        if entry.job in CORE_JOBS:
            pass_tick = True
        elif entry.job in registry.jobs:
            pass_tick = _accepts_tick(registry.jobs[entry.job].function)
        else:
            raise ConfigError(
                f"schedule {entry.name!r} ({owner}) enqueues job {entry.job!r}, which no plugin registers"
            )
        meaning = entry.description or describe(entry.cron)
        jobs.append(CronJob(entry.name, entry.cron, entry.job, meaning, dict(entry.kwargs), pass_tick))
    return jobs


def _hour(hour: int) -> str:
    return f"{hour % 12 or 12}{'am' if hour < 12 else 'pm'}"


def describe(cron: str) -> str:
    """A short human meaning of common expressions (``every 15 min``, ``daily 3am``), else ``cron``."""
    fields = cron.split()
    if len(fields) == 6 and fields[:5] == ["*"] * 5 and fields[5].startswith("*/"):
        return f"every {fields[5][2:]} s"
    if len(fields) != 5:
        return "cron"
    minute, hour, dom, month, dow = fields
    if (hour, dom, month, dow) == ("*", "*", "*", "*"):
        if minute.startswith("*/"):
            return f"every {minute[2:]} min"
        if minute == "*":
            return "every minute"
    if (dom, month, dow) == ("*", "*", "*") and minute.isdigit():
        if hour.isdigit():
            return (
                f"daily {_hour(int(hour))}" if minute == "0" else f"daily {int(hour):02d}:{int(minute):02d}"
            )
        if hour.startswith("*/"):
            return f"every {hour[2:]} hours"
    return "cron"


def latest_fire(cron: str, now: datetime) -> datetime:
    """The latest fire time at or before ``now`` (UTC)."""
    prev: datetime = croniter(cron, now).get_prev(datetime)
    following: datetime = croniter(cron, prev).get_next(datetime)
    return following if following <= now else prev


def next_fire(cron: str, now: datetime) -> datetime:
    """The first fire time strictly after ``now`` (UTC)."""
    fire: datetime = croniter(cron, now).get_next(datetime)
    return fire


Action = Literal["enqueue", "late"]


def decide(
    cron: str, last: datetime | None, now: datetime, max_lateness_s: float
) -> tuple[Action, datetime] | None:
    """What to do for one entry at ``now``.

    ``None`` when its latest fire time is already handled; ``("enqueue", tick)``
    for the latest fire time not yet enqueued (every earlier missed one is
    coalesced into it). An entry that has run before runs its latest missed
    tick however late the scheduler is back: that tick is within one period of
    ``now`` by construction (a daily entry missed at 03:00 runs once at 05:00).
    Only on a first start, with no tick recorded, is a tick more than
    ``max_lateness_s`` old skipped (``("late", tick)``) rather than run.
    """
    tick = latest_fire(cron, now)
    if last is not None and tick <= last:
        return None
    if last is None and (now - tick).total_seconds() > max_lateness_s:
        return ("late", tick)
    return ("enqueue", tick)


def cron_job_id(name: str, tick: datetime) -> str:
    """``cron:{name}:{tick ISO UTC}``: one job per entry and tick, whoever enqueues it."""
    return f"{CRON_JOB_PREFIX}{name}:{tick.astimezone(UTC).isoformat()}"
