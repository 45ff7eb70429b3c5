"""Map Graph API responses (error envelope, usage headers) to the core error tree.

Meta signals errors in the body envelope, not the HTTP status:
``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}``.
Throttles and token errors usually come as HTTP 400, transients as 500.
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

THROTTLE_CODES = frozenset({4, 17, 32, 613, *range(80000, 80015)})
# Who a throttle holds back: 4 = the whole app, 17 = the user's token; 32, 613, 80000-80014 the account.
THROTTLE_SCOPE = {4: SCOPE_APP, 17: SCOPE_TOKEN}
TRANSIENT_CODES = frozenset({1, 2})
CONFIG_CODES = frozenset({100, 200, 270, 294, 2635, 3018})
REDUCE_DATA_TEXT = "reduce the amount of data"

_TOKEN_IN_TEXT = re.compile(r"(access_token=|Bearer\s+)[^&\s\"']+", re.IGNORECASE)


class ReduceDataError(TransientError):
    """Meta asked for less data per request: retry with a smaller ``limit`` or a shorter range."""


class ReportRunFailed(TransientError):
    """An async report run failed, was skipped, stalled at 0% or never finished."""


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

    @classmethod
    def from_body(cls, body: Any) -> GraphError | None:
        if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
            return None
        error: dict[str, Any] = body["error"]
        subcode = error.get("error_subcode")
        return cls(
            code=_as_int(error.get("code")),
            subcode=_as_int(subcode) if subcode is not None else None,
            message=str(error.get("error_user_msg") or error.get("message") or "unknown error"),
            type=error.get("type"),
            fbtrace_id=error.get("fbtrace_id"),
        )

    def describe(self) -> str:
        sub = f"/{self.subcode}" if self.subcode else ""
        return f"Meta API error {self.code}{sub}: {self.message}"


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


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
    if error.code == 190 or (error.type == "OAuthException" and error.code in (102, 104)):
        return AuthError(f"{text}. The Meta access token is no longer valid: reconnect the Meta account.")
    if REDUCE_DATA_TEXT in error.message.lower():
        return ReduceDataError(text)
    if error.code in TRANSIENT_CODES or status >= 500:
        return TransientError(text)
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
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append(float(value))
    return out


@dataclass(frozen=True, slots=True)
class Usage:
    """The highest usage percentage in the three usage headers and when access comes back."""

    max_pct: float
    regain_s: float | None


def parse_usage(headers: Any) -> Usage | None:
    """Read ``X-Business-Use-Case-Usage``, ``X-Ad-Account-Usage`` and ``X-App-Usage``."""
    pcts: list[float] = []
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
    pcts += _pcts(_load(headers.get("x-app-usage")), ("call_count", "total_cputime", "total_time"))
    if not pcts and not regain:
        return None
    positive = [r for r in regain if r > 0]
    return Usage(max(pcts, default=0.0), max(positive) if positive else None)
