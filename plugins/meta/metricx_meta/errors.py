"""Map Graph API responses (error envelope, usage headers) to the core error tree.

Meta signals errors in the body envelope, not the HTTP status:
``{"error": {"message", "type", "code", "error_subcode", "is_transient", "error_user_title",
"error_user_msg", "fbtrace_id"}}``. Decisions follow ``code`` / ``error_subcode`` /
``is_transient`` only: ``error_user_msg`` is localised (and sometimes just "Unknown error"), so
no English wording decides anything. The one exception is the ``appsecret_proof`` parameter name
in the developer ``message`` (Meta gives those rejections the generic code 100).
Each rule is pinned by a fixture under ``plugins/meta/fixtures/`` naming its public source.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from core import (
    SCOPE_ACCOUNT,
    SCOPE_APP,
    SCOPE_TOKEN,
    AuthError,
    ConfigError,
    MetricxError,
    PermanentError,
    RateLimited,
    TransientError,
)

# Throttles. 4 = the app's call count (4/1504022: the app's BUC quota), 17 = the user's token
# (17/2446079), 32 = page, 613 (/1487742) and 80000-80014 (/2446079) the ad account's BUC quota.
THROTTLE_CODES = frozenset({4, 17, 32, 613, *range(80000, 80015)})
THROTTLE_SCOPE = {4: SCOPE_APP, 17: SCOPE_TOKEN}
APP_THROTTLE_SUBCODE = 1504022
# "Please reduce the amount of data you're asking for": 100/1487534 documented; seen as 1 at HTTP 500.
REDUCE_DATA_SUBCODE = 1487534
# Missing permission (10, 200-299 e.g. 200 "Requires ads_read", 294 "Managing advertisements
# requires ads_management") and two-factor authentication required (415): the user must reconnect.
PERMISSION_CODES = frozenset({10, 294, *range(200, 300)})
TWO_FACTOR_CODE = 415
TOKEN_CODE = 190
# Code 190's subcodes, https://developers.facebook.com/docs/graph-api/guides/error-handling
TOKEN_SUBCODES = {
    458: "the user removed the Meta app (app not installed)",
    459: "the user's Facebook account is checkpointed: they must log in at facebook.com to fix it",
    460: "the user changed their Facebook password (or Meta reset the session)",
    463: "the access token expired",
    464: "the user's Facebook account is not confirmed (unconfirmed user)",
    467: "the access token is invalid (the user logged out or Meta revoked it)",
}
TRANSIENT_CODES = frozenset({1, 2})
VERSION_SUNSET_CODE = 2635
CONFIG_CODES = frozenset({100, 2635, 3018})

_TOKEN_IN_TEXT = re.compile(r"(access_token=|appsecret_proof=|Bearer\s+)[^&\s\"']+", re.IGNORECASE)
_PERMISSION_NAME = re.compile(r"\b((?:ads|business|pages|read|instagram|catalog)_[a-z_]+)\b")


class ReduceDataError(TransientError):
    """Meta asked for less data per request: retry with a smaller ``limit``, range or level.

    ``certain`` is False for the undocumented shape (code 1 at HTTP 500 without subcode), which
    is also Meta's generic "unknown error": retry it as is first, then shrink.
    """

    def __init__(self, message: str, *, certain: bool = True) -> None:
        super().__init__(message)
        self.certain = certain


class ReportRunFailed(TransientError):
    """An async report run failed, was skipped, stalled at 0% or never finished.

    ``split_now``: rerunning the same report cannot help (too much data, timeout): split it at once.
    ``slow``: the run stalled or ran too long (Meta is slow, not the report too big): split by days
    only, never into one run per object, and end as this transient error on a single day.
    """

    split_now = False
    slow = False


class ReportRunRejected(PermanentError):
    """An async report run failed with a permanent cause (its ``error_code`` says so): never rerun."""


def redact(text: str, *secrets: str | None) -> str:
    """Remove tokens from ``text``: every known secret and any ``access_token=`` value."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _TOKEN_IN_TEXT.sub(r"\1***", text)


@dataclass(frozen=True, slots=True)
class GraphError:
    """The fields of Meta's error envelope that decide what to do."""

    code: int
    subcode: int | None
    message: str
    type: str | None
    fbtrace_id: str | None
    is_transient: bool | None = None
    user_msg: str | None = None

    @classmethod
    def from_body(cls, body: Any) -> GraphError | None:
        if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
            return None
        return cls.from_fields(body["error"])

    @classmethod
    def from_fields(cls, error: dict[str, Any]) -> GraphError:
        subcode = error.get("error_subcode")
        user_msg = error.get("error_user_msg")
        return cls(
            code=_as_int(error.get("code")),
            subcode=_as_int(subcode) if subcode not in (None, "") else None,
            message=str(error.get("message") or user_msg or "unknown error"),
            type=error.get("type"),
            fbtrace_id=error.get("fbtrace_id"),
            is_transient=error["is_transient"] if isinstance(error.get("is_transient"), bool) else None,
            user_msg=str(user_msg) if user_msg else None,
        )

    def describe(self) -> str:
        sub = f"/{self.subcode}" if self.subcode else ""
        text = f"Meta API error {self.code}{sub}: {self.message}"
        if self.user_msg and self.user_msg not in self.message and self.user_msg != "Unknown error":
            text += f" ({self.user_msg})"
        return text


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def missing_permission(error: GraphError) -> str | None:
    """The permission Meta names (``ads_read``, ``business_management``...), if it names one."""
    found = _PERMISSION_NAME.search(f"{error.message} {error.user_msg or ''}")
    return found.group(1) if found else None


def _permission_error(error: GraphError, text: str) -> AuthError:
    if error.code == TWO_FACTOR_CODE:
        why = "Meta requires two-factor authentication for this user: turn it on at facebook.com"
    elif (name := missing_permission(error)) is not None:
        why = f"the token lacks the {name} permission"
    elif error.code == 294:
        why = "the token lacks the ads_management permission"
    else:
        why = "the token lacks a permission this call needs (ads_read for reporting)"
    return AuthError(f"{text}. {why}: reconnect the Meta account and grant it.")


def _appsecret_error(error: GraphError, text: str) -> ConfigError | None:
    if error.code != 100 or "appsecret_proof" not in error.message:
        return None
    if "require" in error.message:
        why = "this Meta app requires an appsecret_proof (set METRICX_META_APP_SECRET to the app's secret)"
    else:
        why = "Meta rejected the appsecret_proof (METRICX_META_APP_SECRET is not the token's app's secret)"
    return ConfigError(f"{text}. {why}.")


def map_graph_error(
    status: int, error: GraphError | None, *, retry_after_s: float | None, default_retry_s: float
) -> MetricxError:
    """The core error for a failed response; callers redact the message before raising."""
    if error is None:
        if status >= 500 or status == 429:
            return TransientError(f"Meta API answered HTTP {status} without an error body")
        return PermanentError(f"Meta API answered HTTP {status} without an error body")
    text = error.describe()
    if error.code in THROTTLE_CODES:
        wait = retry_after_s if retry_after_s and retry_after_s > 0 else default_retry_s
        scope = THROTTLE_SCOPE.get(error.code, SCOPE_ACCOUNT)
        return RateLimited(f"{text} (throttled; retry in {wait:.0f}s)", wait, scope=scope)
    if error.code == TOKEN_CODE:
        meaning = TOKEN_SUBCODES.get(error.subcode or 0, "the access token is no longer valid")
        return AuthError(f"{text}. {meaning[0].upper()}{meaning[1:]}: reconnect the Meta account.")
    if error.code in (102, 104):
        return AuthError(f"{text}. No valid Meta access token was sent: reconnect the Meta account.")
    if error.code in PERMISSION_CODES or error.code == TWO_FACTOR_CODE:
        return _permission_error(error, text)
    if error.subcode == REDUCE_DATA_SUBCODE:
        return ReduceDataError(text)
    if error.code == 1 and status >= 500 and error.subcode is None:
        return ReduceDataError(text, certain=False)
    if error.is_transient or status >= 500:
        return TransientError(text)
    if error.code in TRANSIENT_CODES and error.is_transient is not False:
        return TransientError(text)
    if (appsecret := _appsecret_error(error, text)) is not None:
        return appsecret
    if error.code == VERSION_SUNSET_CODE:
        return ConfigError(f"{text}. Set METRICX_META_API_VERSION to a supported Marketing API version.")
    if error.code in CONFIG_CODES or status in (400, 403, 404):
        return ConfigError(text)
    return PermanentError(text)


def _load(value: str | None) -> Any:
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def _pcts(entry: Any, keys: tuple[str, ...]) -> list[float]:
    if not isinstance(entry, dict):
        return []
    out: list[float] = []
    for key in keys:
        value = entry.get(key)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append(float(value))
    return out


@dataclass(frozen=True, slots=True)
class Usage:
    """Usage read from the headers: the account's and the app's highest percentage, and the wait."""

    max_pct: float
    regain_s: float | None
    app_pct: float = 0.0

    @property
    def account_pct(self) -> float:
        return self.max_pct


def parse_usage(headers: Any) -> Usage | None:
    """Read ``X-Business-Use-Case-Usage``, ``X-Ad-Account-Usage``, ``X-App-Usage`` and
    ``X-FB-Ads-Insights-Throttle`` (``app_id_util_pct`` / ``acc_id_util_pct``).

    ``estimated_time_to_regain_access`` is in minutes, ``reset_time_duration`` in seconds.
    """
    pcts: list[float] = []
    app: list[float] = []
    regain: list[float] = []
    buc = _load(headers.get("x-business-use-case-usage"))
    if isinstance(buc, dict):
        for entries in buc.values():
            for entry in entries if isinstance(entries, list) else []:
                pcts += _pcts(entry, ("call_count", "total_cputime", "total_time"))
                regain += [m * 60 for m in _pcts(entry, ("estimated_time_to_regain_access",))]
    account = _load(headers.get("x-ad-account-usage"))
    pcts += _pcts(account, ("acc_id_util_pct",))
    if pcts and max(pcts) >= 100:
        regain += _pcts(account, ("reset_time_duration",))
    insights = _load(headers.get("x-fb-ads-insights-throttle"))
    pcts += _pcts(insights, ("acc_id_util_pct",))
    app += _pcts(insights, ("app_id_util_pct",))
    app += _pcts(_load(headers.get("x-app-usage")), ("call_count", "total_cputime", "total_time"))
    if not pcts and not app and not regain:
        return None
    positive = [r for r in regain if r > 0]
    return Usage(max(pcts, default=0.0), max(positive) if positive else None, max(app, default=0.0))
