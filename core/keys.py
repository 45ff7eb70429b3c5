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
    retry_key_prefix,
)

#: The job id of the sync a connection has queued or running (one at a time per connection).
ACTIVE_SYNC_PREFIX = "metricx:sync:active:"
#: Held while a sync of the connection runs (any mode, any job).
CONNECTION_LOCK_PREFIX = "metricx:lock:connection:"
#: Plugins' namespaced cache (``ProviderContext.cache``): ``{prefix}:{provider}:...``.
CACHE_PREFIX = "metricx:cache"
#: Rate-limiter state per throttle-scope key (core/ratelimit.py, core/sync/throttle.py):
#: ``{prefix}:{scope key}:blocked``; the account's own pacing ``{prefix}:{account key}[:usage|:gcra]``.
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
#: When the token upkeep last refreshed a connection's credentials (core/upkeep.py): ``{prefix}{id}``.
TOKEN_UPKEEP_PREFIX = "metricx:upkeep:last:"
#: A dashboard sign-in session, by the hash of its cookie value (core/web).
WEB_SESSION_PREFIX = "metricx:web:session:"


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


def web_session(token_hash: str) -> str:
    """The dashboard session stored under the hash of its cookie value."""
    return f"{WEB_SESSION_PREFIX}{token_hash}"


def arq_job(job_id: str) -> str:
    """arq's key of a queued job's payload (present while queued or running)."""
    return job_key_prefix + job_id


def arq_result(job_id: str) -> str:
    """arq's key of a finished job's result."""
    return result_key_prefix + job_id


def arq_retry(job_id: str) -> str:
    """arq's count of a job's tries (incremented when a try starts)."""
    return retry_key_prefix + job_id


def arq_in_progress(job_id: str) -> str:
    """arq's key present while a worker runs the job."""
    return in_progress_key_prefix + job_id


#: Failed API-key attempts of one client address in the current window (core/api/guards.py).
AUTH_FAILURES_PREFIX = "metricx:auth:failures:"


def auth_failures(client: str) -> str:
    """The counter of failed authentication attempts from ``client`` (an address)."""
    return f"{AUTH_FAILURES_PREFIX}{client}"


#: Tries of a job given back because PostgreSQL or Redis was down (bounded, see core.sync.infra_retry).
INFRA_RETRY_PREFIX = "metricx:infra-retry:"


def infra_retries(job_id: str) -> str:
    """How many tries of ``job_id`` were given back after an infrastructure fault."""
    return f"{INFRA_RETRY_PREFIX}{job_id}"


def unrecorded_runs(job_id: str) -> str:
    """``sync_runs`` ids of ``job_id`` whose end could not be written (the database was down)."""
    return f"{INFRA_RETRY_PREFIX}{job_id}:unrecorded"


__all__ = [
    "ACTIVE_SYNC_PREFIX",
    "ALERT_JOB_PREFIX",
    "AUTH_FAILURES_PREFIX",
    "CACHE_PREFIX",
    "CONNECTION_LOCK_PREFIX",
    "CRON_JOB_PREFIX",
    "FANOUT_PASSES_PREFIX",
    "FANOUT_SLOT_PREFIX",
    "INFRA_RETRY_PREFIX",
    "RATE_LIMIT_PREFIX",
    "SCHEDULER_LAST_TICKS_PREFIX",
    "SCHEDULER_LEASE_PREFIX",
    "WEB_SESSION_PREFIX",
    "active_sync",
    "arq_in_progress",
    "arq_job",
    "arq_result",
    "arq_retry",
    "connection_lock",
    "default_queue_name",
    "expires_extra_ms",
    "fanout_passes",
    "fanout_slot",
    "in_progress_key_prefix",
    "infra_retries",
    "job_key_prefix",
    "result_key_prefix",
    "unrecorded_runs",
    "web_session",
]
