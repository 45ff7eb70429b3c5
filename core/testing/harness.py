"""The core's runtime pieces that provider tests drive, under names that stay put.

A plugin's own code uses only ``core``'s public API; its integration tests also
need to reach the running core: a database session to look at what a sync
stored, the service layer to create workspaces and connections, the enqueue
helpers, the fan-out, the registry and the settings. They import them from
here (``from core.testing.harness import session_scope``) rather than from the
modules that implement them, so the core can move its internals without
breaking third-party test suites.
"""

from __future__ import annotations

from core import hookspecs
from core.api import create_app as create_api
from core.config import Settings, get_settings
from core.cron import next_fire
from core.db.engine import session_scope
from core.db.models import Connection
from core.enqueue import JobRequest, enqueue_many, enqueue_sync_job
from core.fanout import fan_out
from core.plugins import get_registry, load_registry
from core.services import create_connection, create_workspace
from core.sync.loading import ConnectionCredentials, account_ref, load_credentials
from core.sync.throttle import scope_keys, sync_limiter
from core.sync.windows import is_deep_tier_day, local_today, slot_start

__all__ = [
    "Connection",
    "ConnectionCredentials",
    "JobRequest",
    "Settings",
    "account_ref",
    "create_api",
    "create_connection",
    "create_workspace",
    "enqueue_many",
    "enqueue_sync_job",
    "fan_out",
    "get_registry",
    "get_settings",
    "hookspecs",
    "is_deep_tier_day",
    "load_credentials",
    "load_registry",
    "local_today",
    "next_fire",
    "scope_keys",
    "session_scope",
    "slot_start",
    "sync_limiter",
]
