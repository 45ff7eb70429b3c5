"""metricx core runtime: the public API that provider plugins build on."""

from __future__ import annotations

from core.cache import CacheLock, ProviderCache
from core.context import provider_context
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
from core.http import (
    TRANSPORT_ERRORS,
    ConnectionLost,
    ProviderAPI,
    ProviderHTTP,
    RequestAuth,
    RetryPolicy,
    Usage,
    parse_retry_after,
)
from core.providers import (
    AccountInfo,
    AccountRef,
    ApiVersion,
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
    "TRANSPORT_ERRORS",
    "AccountInfo",
    "AccountRef",
    "ApiVersion",
    "AuthError",
    "CacheLock",
    "Capabilities",
    "ConfigError",
    "ConnectionLost",
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
    "ProviderAPI",
    "ProviderCache",
    "ProviderContext",
    "ProviderHTTP",
    "RateLimited",
    "RequestAuth",
    "RetryPolicy",
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
    "Usage",
    "__version__",
    "accounts_due",
    "accounts_for",
    "enqueue_plugin_sync",
    "enqueue_plugin_syncs",
    "hookimpl",
    "parse_retry_after",
    "plugin_session",
    "provider_context",
]
