"""metricx core runtime: the public API that provider plugins build on."""

from __future__ import annotations

from core.enqueue import EnqueueResult
from core.errors import (
    AuthError,
    ConfigError,
    MetricxError,
    PayloadError,
    PermanentError,
    RateLimited,
    TransientError,
)
from core.hookspecs import hookimpl
from core.providers import (
    AccountInfo,
    AccountRef,
    Capabilities,
    Credentials,
    DemoConnection,
    EntityRecord,
    JobSpec,
    MetricRecord,
    Provider,
    ProviderContext,
    ScheduleEntry,
    SimulatorSpec,
    SyncMode,
    SyncWindow,
)
from core.state import ConnectionStatus, RunStatus, SyncJobId, SyncStatus
from core.sync.context import (
    SyncContext,
    SyncJobSpec,
    SyncWork,
    accounts_due,
    accounts_for,
    enqueue_plugin_sync,
    enqueue_plugin_syncs,
    plugin_session,
)

__version__ = "0.1.0"

__all__ = [
    "AccountInfo",
    "AccountRef",
    "AuthError",
    "Capabilities",
    "ConfigError",
    "ConnectionStatus",
    "Credentials",
    "DemoConnection",
    "EnqueueResult",
    "EntityRecord",
    "JobSpec",
    "MetricRecord",
    "MetricxError",
    "PayloadError",
    "PermanentError",
    "Provider",
    "ProviderContext",
    "RateLimited",
    "RunStatus",
    "ScheduleEntry",
    "SimulatorSpec",
    "SyncContext",
    "SyncJobId",
    "SyncJobSpec",
    "SyncMode",
    "SyncStatus",
    "SyncWindow",
    "SyncWork",
    "TransientError",
    "__version__",
    "accounts_due",
    "accounts_for",
    "enqueue_plugin_sync",
    "enqueue_plugin_syncs",
    "hookimpl",
    "plugin_session",
]
