"""metricx core runtime: the public API that provider plugins build on."""

from __future__ import annotations

from core.cache import CacheLock, ProviderCache
from core.context import provider_context
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
    "Credentials",
    "DemoConnection",
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
    "ScheduleEntry",
    "SimulatorSpec",
    "SyncMode",
    "SyncWindow",
    "TransientError",
    "Usage",
    "__version__",
    "hookimpl",
    "parse_retry_after",
    "provider_context",
]
