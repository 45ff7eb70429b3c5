"""Parse Google Ads' GoogleAdsFailure error envelope and map it onto core's error tree.

authenticationError CUSTOMER_NOT_FOUND, CLIENT_CUSTOMER_ID_INVALID, NOT_ADS_USER,
  TWO_STEP_VERIFICATION_NOT_ENROLLED      -> ConfigError, each with its own fix (not a token problem)
other authenticationError, bare 401       -> refresh the token once, then AuthError (reconnect)
requestError UNSUPPORTED_VERSION, plain 404 -> ConfigError naming METRICX_GOOGLE_API_VERSION
quotaError RESOURCE_TEMPORARILY_EXHAUSTED,
  EXCESSIVE_SHORT_TERM_...                -> RateLimited(retryDelay), account scope
quotaError RESOURCE_EXHAUSTED             -> RateLimited(retryDelay, else to midnight Pacific), developer
quotaError EXCESSIVE_LONG_TERM_...        -> RateLimited(at least LONG_TERM_BACKOFF_S), account scope
quotaError ACCESS_PROHIBITED              -> PermanentError (the developer token / project is barred)
internalError, HTTP 5xx                   -> TransientError
authorizationError, queryError, ...       -> ConfigError with Google's message
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from core import SCOPE_DEVELOPER, ConfigError, MetricxError, PermanentError, RateLimited, TransientError

PACIFIC = ZoneInfo("America/Los_Angeles")
DEFAULT_RETRY_S = 30.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")
_DEPRECATED = re.compile(r"Version v\d+ is deprecated", re.IGNORECASE)
#: How long an account rests after EXCESSIVE_LONG_TERM_QUERY_RESOURCE_CONSUMPTION (Google names no delay).
LONG_TERM_BACKOFF_S = 6 * 3600.0
_CONFIG_TYPES = ("authorizationError", "queryError", "requestError", "fieldError", "customerError")
_TRANSIENT_CODES = ("INTERNAL_ERROR", "TRANSIENT_ERROR", "DEADLINE_EXCEEDED")


@dataclass(frozen=True, slots=True)
class AdsError:
    """One entry of ``GoogleAdsFailure.errors``: ``kind`` is e.g. ``quotaError``, ``code`` its value."""

    kind: str
    code: str
    message: str
    retry_delay_s: float | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed Google Ads response, parsed."""

    http_status: int
    status: str
    message: str
    request_id: str | None
    errors: tuple[AdsError, ...] = field(default=())

    def has(self, kind: str, code: str | None = None) -> bool:
        return any(e.kind == kind and (code is None or e.code == code) for e in self.errors)

    @property
    def is_authentication(self) -> bool:
        return self.http_status == 401 or self.has("authenticationError")

    def first_message(self) -> str:
        for error in self.errors:
            if error.message:
                return error.message
        return self.message or f"HTTP {self.http_status}"


def parse_duration_s(value: object) -> float | None:
    """``"37s"`` / ``{"seconds": 37}`` -> 37.0; None when absent or unreadable."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        return float(match.group(1)) if match else None
    if isinstance(value, dict):
        try:
            return float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
        except (TypeError, ValueError):
            return None
    return None


def parse_failure(http_status: int, payload: object, request_id: str | None = None) -> Failure:
    """Read ``{"error": {...}}`` (or its searchStream form ``[{"error": {...}}]``)."""
    if isinstance(payload, list) and payload and isinstance(payload[0], dict):
        payload = payload[0]
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return Failure(http_status, "", "", request_id)
    errors: list[AdsError] = []
    for detail in error.get("details") or []:
        if not isinstance(detail, dict):
            continue
        request_id = request_id or _str(detail.get("requestId"))
        for item in detail.get("errors") or []:
            if isinstance(item, dict):
                errors.append(_ads_error(item))
    return Failure(
        http_status=int(error.get("code") or http_status),
        status=_str(error.get("status")) or "",
        message=_str(error.get("message")) or "",
        request_id=request_id,
        errors=tuple(errors),
    )


def _ads_error(item: dict[str, Any]) -> AdsError:
    code = item.get("errorCode")
    kind, value = next(iter(code.items())) if isinstance(code, dict) and code else ("", "")
    details = item.get("details")
    quota = details.get("quotaErrorDetails") if isinstance(details, dict) else None
    delay = parse_duration_s(quota.get("retryDelay")) if isinstance(quota, dict) else None
    return AdsError(
        kind=str(kind), code=str(value), message=_str(item.get("message")) or "", retry_delay_s=delay
    )


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def seconds_until_pacific_midnight(now: datetime) -> float:
    """Seconds until Google's daily quotas reset (midnight America/Los_Angeles)."""
    local = now.astimezone(PACIFIC)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=PACIFIC)
    return max(1.0, (midnight - local).total_seconds())


def version_retired(version: str, detail: str = "") -> ConfigError:
    """The one message for every answer Google gives a sunset API version (UNSUPPORTED_VERSION, the
    older ``requestError: UNKNOWN`` "Version vN is deprecated", and later a plain-text 404)."""
    seen = f" ({detail})" if detail else ""
    return ConfigError(
        f"Google Ads API version {version} has been retired by Google and every call to it fails{seen}. "
        f"Set METRICX_GOOGLE_API_VERSION to a supported version (the plugin's default is current) "
        f"and restart the workers."
    )


def is_version_retired(failure: Failure) -> bool:
    """A GoogleAdsFailure that says the API version in the path is sunset."""
    for error in failure.errors:
        if error.kind == "requestError" and error.code == "UNSUPPORTED_VERSION":
            return True
        if error.kind == "requestError" and _DEPRECATED.search(error.message):
            return True
    return False


# authenticationError values that are not about the token: reconnecting would not help.
_ACCOUNT_AUTH_ERRORS = {
    "CUSTOMER_NOT_FOUND": "{where} was not found: check the connection's customer id (10 digits, shown "
    "top right in Google Ads) and, for a client account, its login_customer_id",
    "CLIENT_CUSTOMER_ID_INVALID": "{where}: the customer id is not valid: use the 10-digit customer id "
    "of a Google Ads account (hyphens allowed)",
    "NOT_ADS_USER": "{where}: the Google user who authorised metricx is not a user of any Google Ads "
    "account: add that user to the Google Ads account (or to a manager of it), then sync again",
    "TWO_STEP_VERIFICATION_NOT_ENROLLED": "{where} requires 2-Step Verification: the Google user who "
    "authorised metricx must turn on 2-Step Verification for their Google account, then sync again",
}


def account_auth_error(failure: Failure, customer_id: str) -> ConfigError | None:
    """The clear config error for an authenticationError that is about the account, not the token."""
    for error in failure.errors:
        if error.kind == "authenticationError" and error.code in _ACCOUNT_AUTH_ERRORS:
            suffix = f" (request-id {failure.request_id})" if failure.request_id else ""
            text = _ACCOUNT_AUTH_ERRORS[error.code].format(where=f"Google Ads account {customer_id}")
            return ConfigError(f"{text} [{error.code}]{suffix}")
    return None


def to_error(failure: Failure, customer_id: str, now: datetime) -> MetricxError:
    """The core error a user should see for ``failure`` (token authentication is handled by the caller)."""
    where = f"Google Ads account {customer_id}"
    suffix = f" (request-id {failure.request_id})" if failure.request_id else ""
    message = failure.first_message()
    account_auth = account_auth_error(failure, customer_id)
    if account_auth is not None:
        return account_auth
    for error in failure.errors:
        if error.kind != "quotaError":
            continue
        if error.code == "ACCESS_PROHIBITED":
            return PermanentError(
                f"{where}: Google prohibits this developer token / cloud project from the Google Ads API "
                f"(quotaError ACCESS_PROHIBITED): check its access level in the API Center{suffix}"
            )
        if error.code == "EXCESSIVE_LONG_TERM_QUERY_RESOURCE_CONSUMPTION":
            wait = max(error.retry_delay_s or 0.0, LONG_TERM_BACKOFF_S)
            return RateLimited(
                f"{where}: too many expensive queries over a long period; resting {wait:.0f}s{suffix}", wait
            )
        if error.code == "RESOURCE_EXHAUSTED":
            wait = error.retry_delay_s or seconds_until_pacific_midnight(now)
            return RateLimited(
                f"{where}: daily API quota exhausted; resumes in {wait:.0f}s{suffix}",
                wait,
                scope=SCOPE_DEVELOPER,
            )
        wait = error.retry_delay_s or DEFAULT_RETRY_S
        return RateLimited(f"{where}: throttled ({error.code}); retry in {wait:.0f}s{suffix}", wait)
    if any(e.kind == "internalError" and e.code in _TRANSIENT_CODES for e in failure.errors):
        return TransientError(f"{where}: Google internal error: {message}{suffix}")
    if failure.http_status >= 500:
        return TransientError(f"{where}: HTTP {failure.http_status}: {message}{suffix}")
    if failure.has("authorizationError", "USER_PERMISSION_DENIED"):
        return ConfigError(
            f"{where}: permission denied: {message}. If the account is managed through a manager "
            f"account, set login_customer_id to the manager's id (the connection's config: "
            f"`--config login_customer_id=<manager id>` with `metricx connections add`){suffix}"
        )
    if failure.has("authorizationError", "CUSTOMER_NOT_ENABLED"):
        return ConfigError(f"{where} is not enabled (cancelled or suspended): {message}{suffix}")
    if failure.has("queryError", "REQUESTED_METRICS_FOR_MANAGER"):
        return ConfigError(
            f"{where} is a manager account and has no metrics; connect a client account{suffix}"
        )
    if any(e.kind in _CONFIG_TYPES for e in failure.errors) or failure.http_status in (400, 403, 404):
        return ConfigError(f"{where}: {message}{suffix}")
    if failure.http_status == 429:
        return RateLimited(f"{where}: throttled (HTTP 429){suffix}", DEFAULT_RETRY_S)
    return PermanentError(f"{where}: HTTP {failure.http_status}: {message}{suffix}")
