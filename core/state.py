"""Typed sync state: a connection's ``sync_status``, a ``sync_runs`` row's status, and sync job ids.

Both statuses are stored as their string values (``StrEnum``), so a member
compares equal to the text in PostgreSQL and in API responses. The derived
sets name the groups the code asks about (busy, needs attention, terminal),
so a new status is added in one place.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement


class ConnectionStatus(StrEnum):
    """A connection's ``status``: whether it is synced at all (set by its owner, not by syncs)."""

    active = "active"
    paused = "paused"
    disconnected = "disconnected"


class SyncStatus(StrEnum):
    """A connection's ``sync_status``: what its syncs are doing now."""

    idle = "idle"
    queued = "queued"
    syncing = "syncing"
    error = "error"
    rate_limited = "rate_limited"
    reconnect_required = "reconnect_required"


#: A sync is queued or running: another one must not be claimed.
BUSY: frozenset[SyncStatus] = frozenset({SyncStatus.queued, SyncStatus.syncing})
#: The last sync did not finish well: someone (or a later sync) has to act.
NEEDS_ATTENTION: frozenset[SyncStatus] = frozenset(
    {SyncStatus.error, SyncStatus.rate_limited, SyncStatus.reconnect_required}
)
#: No sync is queued or running: the connection's last outcome stands.
SETTLED: frozenset[SyncStatus] = frozenset(SyncStatus) - BUSY


class RunStatus(StrEnum):
    """A ``sync_runs`` row's status: the outcome of one try of a sync job."""

    running = "running"
    complete = "complete"
    failed = "failed"
    retrying = "retrying"  # failed transiently; arq runs another try
    deferred = "deferred"  # rate limited; a new job (or the next schedule) continues
    abandoned = "abandoned"  # its worker died mid-try (killed, lost); closed when the job next runs
    waiting = "waiting"  # the connection was busy: the job waits its turn without using a try
    waited = "waited"  # that wait is over: the job's tries follow (``finished_at``: its turn came)
    merged = "merged"  # waited past the bound: the connection's next sync does this job's work


#: The try is over (``retrying`` and ``abandoned`` are over too, but their job may not be).
FINISHED_RUN: frozenset[RunStatus] = frozenset(RunStatus) - {RunStatus.running, RunStatus.waiting}
#: The job is over: no further try of it will run.
TERMINAL_RUN: frozenset[RunStatus] = frozenset(
    {RunStatus.complete, RunStatus.failed, RunStatus.deferred, RunStatus.merged}
)

#: arq runs a sync job once more than its tries: a job whose every try was killed gets a last
#: call that only closes it (its runs ``abandoned``, the connection ``error``), never a silent drop.
CLOSING_TRIES = 1


def arq_max_tries(tries: int) -> int:
    """The ``max_tries`` to give arq for a sync job allowed ``tries`` tries of work."""
    return tries + CLOSING_TRIES


SYNC_JOB_PREFIX = "sync"


@dataclass(frozen=True, slots=True)
class SyncJobId:
    """A ``process_sync_job`` id: ``sync:{connection_id}:{mode}:{slot}``.

    The slot is a fan-out slot (``YYYYmmddHHMM``, deterministic per schedule
    tick) or the enqueue time in milliseconds (unique per manual request).
    ``mode`` stays a string so a job id of an unknown mode still parses.
    """

    connection_id: str
    mode: str
    slot: str

    @classmethod
    def new(cls, connection_id: object, mode: str, slot: str | None = None) -> SyncJobId:
        """The id of a sync in ``mode``; without a slot, one unique to this moment."""
        return cls(str(connection_id), str(mode), slot or str(int(time.time() * 1000)))

    def format(self) -> str:
        """The id as arq and ``connections.current_job_id`` store it."""
        return f"{SYNC_JOB_PREFIX}:{self.connection_id}{self.tail(self.mode, self.slot)}"

    def __str__(self) -> str:
        return self.format()

    @classmethod
    def parse(cls, job_id: str | None) -> SyncJobId | None:
        """The parts of a sync job id; None for anything else (a cron job, a plugin's job, junk)."""
        parts = (job_id or "").split(":", 3)
        if len(parts) != 4 or parts[0] != SYNC_JOB_PREFIX or not all(parts[1:]):
            return None
        return cls(parts[1], parts[2], parts[3])

    @staticmethod
    def tail(mode: str, slot: str) -> str:
        """What follows the connection id: ``:{mode}:{slot}``."""
        return f":{mode}:{slot}"

    @staticmethod
    def sql(connection_id: Any, tail: Any) -> ColumnElement[str]:
        """The same id built in SQL from a connection id column and the :meth:`tail` (a bound
        parameter, so a set-based claim's statement is the same for every mode and slot)."""
        from sqlalchemy import func

        return func.concat(f"{SYNC_JOB_PREFIX}:", connection_id, tail)


__all__ = [
    "BUSY",
    "CLOSING_TRIES",
    "FINISHED_RUN",
    "NEEDS_ATTENTION",
    "SETTLED",
    "TERMINAL_RUN",
    "ConnectionStatus",
    "RunStatus",
    "SyncJobId",
    "SyncStatus",
    "arq_max_tries",
]
