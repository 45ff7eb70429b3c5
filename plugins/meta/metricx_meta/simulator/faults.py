"""How Meta answers the simulator's faults, and the usage headers every Graph response carries.

The shared fault kinds (core.testing.simulator) in Meta's shapes:

- ``throttle``: by ``scope`` account -> code 80000 (business use case), app -> 4, token -> 17
  (``code`` / ``subcode`` pick another, e.g. 613); ``retry_after_s`` (or ``regain_minutes``)
  sets ``estimated_time_to_regain_access`` in the usage headers
- ``server_error``: ``status`` (default 500), ``code`` (default 2), ``html`` (a non-JSON body)
- ``timeout``: ``seconds`` before answering
- ``token_expired`` / ``token_revoked``: code 190 with subcode 463 / 458
- ``malformed``: ``mode`` ``row`` (insights rows get ``field``, default ``impressions``, set to
  ``value``, default ``"n/a"``, or removed with ``drop: true``), ``truncated`` or ``empty`` (HTTP 200)
- ``version_sunset``: code 2635 for ``version`` (e.g. ``v24.0``; every version when omitted)

and Meta's own:

- ``async``: the next report runs end as ``mode`` = ``stuck`` (0% forever), ``failed`` or ``skipped``
- ``reduce_data``: "Please reduce the amount of data" when ``limit > max_limit`` or the range is longer
  than ``max_days`` (both optional; neither = always): code 100 / subcode 1487534 at HTTP 400, or with
  ``shape: "code1"`` the undocumented code 1 at HTTP 500 without subcode
- ``async`` with ``error`` (``too_much_data``, ``report_failed``, ``invalid_breakdowns``, ``app_throttle``):
  the run fails with v25's ``error_code`` / ``error_message`` fields; ``level`` limits it to runs of
  that level, ``until_scope`` (``campaign``, ``adset``) spares runs filtered to one object that narrow
- ``usage``: usage headers report ``pct`` and ``regain_minutes``
- ``graph_error``: any envelope: ``code``, ``subcode``, ``message``, ``status`` (400), ``type``,
  ``is_transient``, ``user_msg`` (e.g. permission 200 / 10 / 294, two-factor 415, token 190/459)
- ``cursor_expired``: a page request carrying ``after`` is refused (code 100, unverified wording)

A ``throttle`` fault without ``account`` hits every account: an app-wide limit (code 4) across accounts.
"""

from __future__ import annotations

import json
import math
from typing import Any

from core.testing.simulator import Fault
from metricx_meta.simulator.data import Account
from metricx_meta.simulator.envelope import GraphAPIError, RawBody
from metricx_meta.simulator.state import APP_CALLS, SimState

_THROTTLE_MESSAGES = {
    4: ("(#4) Application request limit reached", None),
    17: ("(#17) User request limit reached", 2446079),
    32: ("(#32) Page request limit reached", None),
    613: ("(#613) Calls to this api have exceeded the rate limit.", 1487742),
}
_CODE_OF_SCOPE = {"account": 80000, "app": 4, "token": 17, "developer": 4}
_BUC_MESSAGE = "There have been too many calls from this ad-account. Wait a bit and try again."
REDUCE_DATA_MESSAGE = "Please reduce the amount of data you're asking for, then retry your request"
Usage = tuple[float, int]


def _throttle(code: int, subcode: Any, regain_minutes: int) -> GraphAPIError:
    message, default_subcode = _THROTTLE_MESSAGES.get(code, (f"(#{code}) {_BUC_MESSAGE}", 2446079))
    return GraphAPIError(
        code, message, subcode=int(subcode) if subcode else default_subcode, regain_minutes=regain_minutes
    )


def _regain_minutes(fault: Fault) -> int:
    if "regain_minutes" in fault.params:
        return int(fault.params["regain_minutes"])
    return math.ceil(float(fault.params.get("retry_after_s", 300)) / 60)


def _not_row(fault: Fault) -> bool:
    return str(fault.params.get("mode", "row")) != "row"


def check_faults(state: SimState, account: Account | None, path: str, method: str) -> Usage:
    """Raise the fault this request hits, if any; return the usage (percent, regain minutes) to report."""
    key = account.id if account else None
    pct = state.record_call(key or "app")
    usage: Usage = (pct, 0)
    override = state.take_fault("usage", key, path, method)
    if override is not None:
        usage = (float(override.params.get("pct", 96)), int(override.params.get("regain_minutes", 1)))
    if (fault := state.take_fault("throttle", key, path, method)) is not None:
        code = int(fault.params.get("code", _CODE_OF_SCOPE[str(fault.params.get("scope", "account"))]))
        raise _throttle(code, fault.params.get("subcode"), _regain_minutes(fault))
    if (fault := state.take_fault("graph_error", key, path, method)) is not None:
        p = fault.params
        raise GraphAPIError(
            int(p.get("code", 1)),
            str(p.get("message", "An unknown error occurred")),
            status=int(p.get("status", 400)),
            subcode=int(p["subcode"]) if p.get("subcode") is not None else None,
            type=str(p.get("type", "OAuthException")),
            is_transient=p.get("is_transient"),
            user_msg=p.get("user_msg"),
        )
    if (fault := state.take_fault("server_error", key, path, method)) is not None:
        if fault.params.get("html"):
            raise RawBody(b"<html><body>502 Bad Gateway</body></html>", status=502)
        code = int(fault.params.get("code", 2))
        text = "(#2) Service temporarily unavailable" if code == 2 else "An unknown error occurred"
        raise GraphAPIError(code, text, status=int(fault.params.get("status", 500)), type="OAuthException")
    if (fault := state.take_fault("malformed", key, path, method, _not_row)) is not None:
        raise RawBody(b'{"data": [{"ad_id": "1' if fault.params["mode"] == "truncated" else b"")
    if state.app_usage_per_call_pct:
        # One quota for every account of the app: at 100% each of them gets code 4.
        if state.record_call(APP_CALLS, state.app_usage_per_call_pct) >= 100:
            raise _throttle(4, None, state.regain_minutes(APP_CALLS))
    if key and pct >= 100:
        raise _throttle(80000, None, state.regain_minutes(key))
    return usage


def usage_headers(
    account: Account | None, usage: Usage, path: str, app_pct: float | None = None
) -> dict[str, str]:
    """X-Business-Use-Case-Usage, X-Ad-Account-Usage, X-App-Usage and, on insights calls,
    X-FB-Ads-Insights-Throttle (JSON strings). ``app_pct``: the app's own usage, when modelled."""
    pct, regain = usage
    app = round(pct / 4, 2) if app_pct is None else app_pct
    headers = {"x-app-usage": json.dumps({"call_count": app, "total_time": 1, "total_cputime": 1})}
    if account is None:
        return headers
    kind = "ads_insights" if "insights" in path else "ads_management"
    entry = {
        "type": kind,
        "call_count": pct,
        "total_cputime": round(pct / 2, 2),
        "total_time": round(pct / 2, 2),
        "estimated_time_to_regain_access": regain,
    }
    headers["x-business-use-case-usage"] = json.dumps({account.id: [entry]})
    if kind == "ads_insights":
        headers["x-fb-ads-insights-throttle"] = json.dumps(
            {
                "app_id_util_pct": round(pct / 4, 2),
                "acc_id_util_pct": pct,
                "ads_api_access_tier": "standard_access",
            }
        )
    headers["x-ad-account-usage"] = json.dumps({"acc_id_util_pct": pct, "reset_time_duration": regain * 60})
    return headers


def reduce_data_check(
    state: SimState, account: Account, path: str, limit: int, query: Any, method: str = "GET"
) -> None:
    """Answer "Please reduce the amount of data" when the fault's bounds are exceeded (a POST that
    starts a report run only when the fault names ``"method": "POST"``)."""
    fault = state.peek_fault(
        "reduce_data", account.id, path, method, lambda f: method == "GET" or f.method == "POST"
    )
    if fault is None:
        return
    max_limit, max_days = fault.params.get("max_limit"), fault.params.get("max_days")
    days = (query.until - query.since).days + 1
    too_much = (max_limit is None and max_days is None) or (
        (max_limit is not None and limit > int(max_limit)) or (max_days is not None and days > int(max_days))
    )
    if too_much:
        state.take_fault("reduce_data", account.id, path, method, lambda f: f is fault)
        if fault.params.get("shape") == "code1":
            raise GraphAPIError(1, REDUCE_DATA_MESSAGE, status=500)
        raise GraphAPIError(100, REDUCE_DATA_MESSAGE, subcode=1487534, user_title="Too much data")


def apply_malformed(state: SimState, account: Account, path: str, rows: list[dict[str, Any]]) -> None:
    """Corrupt the first row of an insights page (the malformed fault)."""
    if not rows:
        return
    fault = state.take_fault("malformed", account.id, path, "GET", lambda f: not _not_row(f))
    if fault is None:
        return
    field = str(fault.params.get("field", "impressions"))
    if fault.params.get("drop"):
        rows[0].pop(field, None)
    else:
        rows[0][field] = fault.params.get("value", "n/a")
