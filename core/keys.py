"""Every Redis key name metricx uses, in one place (like arq's ``constants.py``).

arq's own key names and expiry come from ``arq.constants``, never copies, so
the keys metricx writes for arq (see :mod:`core.enqueue`) stay the ones arq reads.
"""

from __future__ import annotations

from arq.constants import (
    default_queue_name,
    expires_extra_ms,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
)

#: The job id of the sync a connection has queued or running (one at a time per connection).
ACTIVE_SYNC_PREFIX = "metricx:sync:active:"
#: Held while a sync of the connection runs (any mode, any job).
CONNECTION_LOCK_PREFIX = "metricx:lock:connection:"
#: Plugins' namespaced cache (``ProviderContext.cache``): ``{prefix}:{provider}:...``.
CACHE_PREFIX = "metricx:cache"
#: Rate-limiter state per (provider, account): ``{prefix}:{provider}:{account}[:blocked|:usage|:gcra]``.
RATE_LIMIT_PREFIX = "metricx:rl"
#: Connections a fan-out enqueued in one slot: ``{prefix}{mode}:{slot}`` (a set).
FANOUT_SLOT_PREFIX = "metricx:fanout:slot:"
#: How many passes a busy attribution fan-out has run: ``{prefix}{mode}:{slot}``.
FANOUT_PASSES_PREFIX = "metricx:fanout:passes:"
#: The scheduler's leadership lease, per queue.
SCHEDULER_LEASE_PREFIX = "metricx:scheduler:lease:"
#: The last tick the scheduler handled per cron entry (a hash), per queue.
SCHEDULER_LAST_TICKS_PREFIX = "metricx:scheduler:last:"
#: Job ids of alert deliveries: ``alert:{delivery}:{attempt}``.
ALERT_JOB_PREFIX = "alert:"
#: Job ids of cron ticks: ``cron:{entry}:{tick}``.
CRON_JOB_PREFIX = "cron:"


def active_sync(connection_id: object) -> str:
    """The key holding the connection's queued or running sync job id."""
    return f"{ACTIVE_SYNC_PREFIX}{connection_id}"


def connection_lock(connection_id: object) -> str:
    """The lock one running sync of the connection holds."""
    return f"{CONNECTION_LOCK_PREFIX}{connection_id}"


def fanout_slot(mode: str, slot: str) -> str:
    """The set of connections enqueued by the ``mode`` fan-out of ``slot``."""
    return f"{FANOUT_SLOT_PREFIX}{mode}:{slot}"


def fanout_passes(mode: str, slot: str) -> str:
    """The counter of follow-up passes of the ``mode`` fan-out of ``slot``."""
    return f"{FANOUT_PASSES_PREFIX}{mode}:{slot}"


def arq_job(job_id: str) -> str:
    """arq's key of a queued job's payload (present while queued or running)."""
    return job_key_prefix + job_id


def arq_result(job_id: str) -> str:
    """arq's key of a finished job's result."""
    return result_key_prefix + job_id


def arq_in_progress(job_id: str) -> str:
    """arq's key present while a worker runs the job."""
    return in_progress_key_prefix + job_id


__all__ = [
    "ACTIVE_SYNC_PREFIX",
    "ALERT_JOB_PREFIX",
    "CACHE_PREFIX",
    "CONNECTION_LOCK_PREFIX",
    "CRON_JOB_PREFIX",
    "FANOUT_PASSES_PREFIX",
    "FANOUT_SLOT_PREFIX",
    "RATE_LIMIT_PREFIX",
    "SCHEDULER_LAST_TICKS_PREFIX",
    "SCHEDULER_LEASE_PREFIX",
    "active_sync",
    "arq_in_progress",
    "arq_job",
    "arq_result",
    "connection_lock",
    "default_queue_name",
    "expires_extra_ms",
    "fanout_passes",
    "fanout_slot",
    "in_progress_key_prefix",
    "job_key_prefix",
    "result_key_prefix",
]
