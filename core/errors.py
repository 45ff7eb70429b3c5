"""The error tree providers raise and the sync engine maps to status and retries.

    MetricxError
     ├── TransientError        5xx, timeouts, resets: retried with backoff
     │    └── InfraUnavailable  (core.infra) PostgreSQL / Redis down: retried, never used up
     ├── RateLimited           throttled: deferred until retry_after, not a failure
     ├── AuthError             expired / revoked token: reconnect_required, never retried
     ├── ConfigError           bad account id, bad parameters: error, never retried
     └── PermanentError        anything else that retrying cannot fix
          └── PayloadError     the provider returned data the engine cannot store

Messages must never contain tokens: they are shown to users and written to the
database. Each error carries its data as attributes.
"""

from __future__ import annotations


class MetricxError(Exception):
    """Base of every error a provider may raise."""

    kind = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TransientError(MetricxError):
    """A failure that may pass on its own (5xx, timeout, reset): retry with backoff."""

    kind = "transient"


# What a throttle covers (``RateLimited.scope``); the limiter blocks every connection sharing it.
SCOPE_ACCOUNT = "account"  # one ad account / store (trusted once the provider verified the credential)
SCOPE_TOKEN = "token"  # every account reached with one credential
SCOPE_APP = "app"  # every account of one OAuth app (e.g. a Meta app id from the operator's settings)
SCOPE_DEVELOPER = "developer"  # every account of one developer token / cloud project (Google)
THROTTLE_SCOPES = (SCOPE_ACCOUNT, SCOPE_TOKEN, SCOPE_APP, SCOPE_DEVELOPER)


class RateLimited(MetricxError):
    """The platform throttled us; try again after ``retry_after_s`` seconds.

    ``scope`` says who else the throttle holds back (one of :data:`THROTTLE_SCOPES`);
    an unknown scope is treated as ``account``.
    """

    kind = "rate_limited"

    def __init__(self, message: str, retry_after_s: float, *, scope: str = SCOPE_ACCOUNT) -> None:
        super().__init__(message)
        self.retry_after_s = max(0.0, float(retry_after_s))
        self.scope = scope


class AuthError(MetricxError):
    """The token is missing, expired or revoked: the user must reconnect."""

    kind = "auth"


class ConfigError(MetricxError):
    """The connection's configuration is wrong (account id, permissions, parameters)."""

    kind = "config"


class PermanentError(MetricxError):
    """A failure that retrying cannot fix."""

    kind = "permanent"


class PayloadError(PermanentError):
    """A provider record is malformed (missing field, text where a number belongs)."""

    kind = "payload"
