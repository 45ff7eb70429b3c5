"""metricx core runtime: the public API that provider plugins build on."""

from __future__ import annotations

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
    "AccountInfo",
    "AccountRef",
    "ApiVersion",
    "AuthError",
    "Capabilities",
    "ConfigError",
    "Credentials",
    "DemoConnection",
    "EntityRecord",
    "JobSpec",
    "MetricRecord",
    "MetricxError",
    "PayloadError",
    "PermanentError",
    "Provider",
    "ProviderContext",
    "RateLimited",
    "ScheduleEntry",
    "SimulatorSpec",
    "SyncMode",
    "SyncWindow",
    "TransientError",
    "__version__",
    "hookimpl",
]
