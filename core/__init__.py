"""metricx core runtime: the public API that provider plugins build on."""

from __future__ import annotations

from core.errors import (
    SCOPE_ACCOUNT,
    SCOPE_APP,
    SCOPE_DEVELOPER,
    SCOPE_TOKEN,
    THROTTLE_SCOPES,
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

__version__ = "0.1.0"

__all__ = [
    "SCOPE_ACCOUNT",
    "SCOPE_APP",
    "SCOPE_DEVELOPER",
    "SCOPE_TOKEN",
    "THROTTLE_SCOPES",
    "AccountInfo",
    "AccountRef",
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
