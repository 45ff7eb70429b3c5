"""The simulated Graph API routes: token and version checks, faults, usage headers, edges, insights."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.testing.sim_app import note_account
from metricx_meta.simulator.data import Account
from metricx_meta.simulator.envelope import GraphAPIError, RawBody, invalid_parameter, unknown_object
from metricx_meta.simulator.faults import (
    REDUCE_DATA_MESSAGE,
    apply_malformed,
    check_faults,
    reduce_data_check,
    usage_headers,
)
from metricx_meta.simulator.query import (
    InsightsQuery,
    decode_cursor,
    encode_cursor,
    iter_rows,
    parse_filters,
    parse_insights,
    select,
)
from metricx_meta.simulator.state import ReportRun, SimState

_VERSION = re.compile(r"^v(\d+)\.0$")
_EDGE_FIELDS = ("id", "name", "status", "effective_status", "created_time", "updated_time")
_LEVEL_OF_EDGE = {"campaigns": "campaign", "adsets": "adset", "ads": "ad"}


@dataclass(slots=True)
class Call:
    """One Graph request after the common checks: parameters, the account it concerns, the state."""

    state: SimState
    request: Request
    params: dict[str, str]
    account: Account | None

    @property
    def acct(self) -> Account:
        assert self.account is not None
        return self.account

    def limit(self) -> int:
        raw = self.params.get("limit", "25")
        if not raw.isdigit() or not 0 < int(raw) <= 5000:
            raise invalid_parameter("Param limit must be a number between 1 and 5000")
        return int(raw)


Handler = Callable[[Call], Awaitable[dict[str, Any]]]


def _check_token(state: SimState, request: Request, params: dict[str, str], account: str | None) -> None:
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else params.get("access_token")
    if not token:
        raise GraphAPIError(104, "An access token is required to request this resource.")
    token_state = state.token_state(token)
    path, method = request.url.path, request.method
    if token_state == "valid" and state.take_fault("token_revoked", account, path, method):
        raise GraphAPIError(
            190, "Error validating access token: The user has not authorized application.", subcode=458
        )
    if token_state == "valid" and state.take_fault("token_expired", account, path, method):
        token_state = "expired"
    if token_state == "expired":
        when = state.now().strftime("%A, %d-%b-%y %H:%M:%S UTC")
        raise GraphAPIError(
            190, f"Error validating access token: Session has expired on {when}.", subcode=463
        )
    if token_state != "valid":
        raise GraphAPIError(190, "Invalid OAuth access token - Cannot parse access token")
    _check_proof(state, params, token)


def _check_proof(state: SimState, params: dict[str, str], token: str) -> None:
    """An app with "Require App Secret": appsecret_proof must be HMAC-SHA256(app secret, token), hex."""
    if not state.app_secret:
        return
    proof = params.get("appsecret_proof")
    if not proof:
        raise GraphAPIError(
            100, "API calls from the server require an appsecret_proof argument", type="GraphMethodException"
        )
    expected = hmac.new(state.app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(proof, expected):
        raise GraphAPIError(
            100, "Invalid appsecret_proof provided in the API argument", type="GraphMethodException"
        )


def _check_version(state: SimState, request: Request, version: str, account: str | None) -> None:
    match = _VERSION.match(version)
    if match is None or int(match.group(1)) > state.max_version:
        # (unverified) the shape Graph gives a path it cannot route
        raise GraphAPIError(2500, f"Unknown path components: /{version}", type="OAuthException")
    sunset = state.take_fault(
        "version_sunset",
        account,
        request.url.path,
        request.method,
        lambda f: f.params.get("version") in (None, version),
    )
    if sunset is not None or int(match.group(1)) < state.min_version:
        raise GraphAPIError(
            2635,
            f"(#2635) You are calling a deprecated version of the Ads API. Please update to the latest "
            f"version: v{state.min_version}.0.",
        )


def _account_of(state: SimState, request: Request) -> Account | None:
    path = request.path_params
    if "account_id" in path:
        account = state.accounts.get(str(path["account_id"]))
        if account is None:
            raise unknown_object(f"act_{path['account_id']}")
        return account
    run = state.runs.get(str(path.get("object_id", "")))
    return state.accounts.get(run.account_id) if run else None


def graph(state: SimState, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler with what every Graph call does: checks, faults, usage headers, error envelope."""

    async def endpoint(request: Request) -> Response:
        params = {k: str(v) for k, v in request.query_params.items()}
        if request.method == "POST":
            params |= dict(parse_qsl((await request.body()).decode(errors="replace")))
        account: Account | None = None
        usage: tuple[float, int] = (0.0, 0)
        path, method = request.url.path, request.method
        account_id = request.path_params.get("account_id")
        note_account(request, account_id)
        try:
            _check_version(state, request, str(request.path_params["version"]), account_id)
            _check_token(state, request, params, account_id)
            account = _account_of(state, request)
            delay = state.take_fault("timeout", account.id if account else None, path, method)
            if delay is not None:
                await asyncio.sleep(float(delay.params.get("seconds", 1.0)))
            usage = check_faults(state, account, path, method)
            body = await handler(Call(state, request, params, account))
        except GraphAPIError as err:
            if err.regain_minutes is not None:
                usage = (100.0, err.regain_minutes)
            headers = usage_headers(account, usage, path, state.app_usage_pct())
            return JSONResponse(err.body(), status_code=err.status, headers=headers)
        except RawBody as raw:
            headers = usage_headers(account, usage, path, state.app_usage_pct())
            return Response(raw.content, status_code=raw.status, headers=headers)
        return JSONResponse(body, headers=usage_headers(account, usage, path, state.app_usage_pct()))

    return endpoint


def _paged(call: Call, rows: Iterator[tuple[tuple[int, int], dict[str, Any]]]) -> dict[str, Any]:
    if call.params.get("after") and call.state.take_fault(
        "cursor_expired", call.account.id if call.account else None, call.request.url.path, "GET"
    ):
        raise invalid_parameter("The 'after' cursor is invalid or has expired (unverified wording)")
    limit, next_position = call.limit(), None
    data: list[dict[str, Any]] = []
    first_position = None
    for position, row in rows:
        if len(data) == limit:
            next_position = position
            break
        first_position = first_position or position
        data.append(row)
    body: dict[str, Any] = {"data": data}
    if data and first_position is not None:
        after = encode_cursor(*(next_position or (1 << 30, 0)))
        body["paging"] = {"cursors": {"before": encode_cursor(*first_position), "after": after}}
        if next_position is not None:
            url = call.request.url.include_query_params(after=after, limit=limit)
            body["paging"]["next"] = str(url)
    return body


async def me(call: Call) -> dict[str, Any]:
    return {"id": "100000000000001", "name": "Simulated User"}


def _token(call: Call) -> str:
    header = call.request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else call.params.get("access_token", "")


async def my_permissions(call: Call) -> dict[str, Any]:
    from metricx_meta.simulator.oauth import permissions

    return await permissions(call.state, _token(call))


async def my_ad_accounts(call: Call) -> dict[str, Any]:
    from metricx_meta.simulator.oauth import ad_accounts

    return ad_accounts(call.state)


async def account(call: Call) -> dict[str, Any]:
    acct = call.acct
    offset = call.state.local_now(acct).utcoffset()
    info = {
        "id": f"act_{acct.id}",
        "account_id": acct.id,
        "name": acct.name,
        "currency": acct.currency,
        "timezone_name": acct.timezone,
        "timezone_offset_hours_utc": offset.total_seconds() / 3600 if offset else 0.0,
        "account_status": 1,
    }
    fields = call.params.get("fields", "account_id").split(",")
    return {k: v for k, v in info.items() if k in fields or k == "id"}


def _entity_json(acct: Account, entity_id: str, fields: list[str]) -> dict[str, Any]:
    entity = acct.by_id[entity_id]
    stamp = (entity.updated or entity.created).strftime("%Y-%m-%dT%H:%M:%S+0000")
    info: dict[str, Any] = {
        "id": entity.id,
        "name": entity.name,
        "status": entity.status,
        "effective_status": acct.effective_status(entity),
        "created_time": entity.created.strftime("%Y-%m-%dT08:00:00+0000"),
        "updated_time": stamp,
        "campaign_id": entity.campaign_id,
        "adset_id": entity.adset_id,
        "objective": "OUTCOME_SALES",
        "daily_budget": str(5000 + int(entity.id[-3:]) * 100),
    }
    if entity.level == "ad":
        info["creative"] = {"id": f"26{entity.id[2:]}"}
    keep = {f.split("{")[0] for f in fields}
    return {k: v for k, v in info.items() if (k in keep or k == "id") and v is not None}


async def edge(call: Call) -> dict[str, Any]:
    name = str(call.request.path_params["edge"])
    level = _LEVEL_OF_EDGE.get(name)
    if level is None:
        raise GraphAPIError(100, f"(#100) Tried accessing nonexisting field ({name})")
    fields = call.params.get("fields", "id").split(",")
    entities = select(call.acct, level, parse_filters(call.params.get("filtering")), "effective_status")
    # Meta stops listing the ad sets and ads of a deleted campaign: they are reachable by id only.
    entities = [e for e in entities if not call.acct.hidden(e)]
    start = decode_cursor(call.params.get("after"))[1]
    rows = (((0, i), _entity_json(call.acct, e.id, fields)) for i, e in enumerate(entities) if i >= start)
    return _paged(call, rows)


def _insights_page(call: Call, query: InsightsQuery, account_: Account) -> dict[str, Any]:
    reduce_data_check(call.state, account_, call.request.url.path, call.limit(), query)
    now_local = call.state.local_now(account_)
    position = decode_cursor(call.params.get("after"))
    body = _paged(call, iter_rows(account_, query, now_local, position))
    apply_malformed(call.state, account_, call.request.url.path, body["data"])
    return body


# How finely a run's filtering narrows it: a fault with ``until_scope`` spares runs at least that narrow.
_SCOPE_RANK = {"account": 0, "campaign": 1, "adset": 2, "ad": 3}
# The v25+ failure fields of a run that failed with each `error` of the async fault (error-codes page).
RUN_ERRORS: dict[str, dict[str, Any]] = {
    "too_much_data": {
        "error_code": 100,
        "error_subcode": 1487534,
        "error_message": REDUCE_DATA_MESSAGE,
        "error_user_title": "Too much data",
        "error_user_msg": "Unknown error",
    },
    "report_failed": {
        "error_code": -2,
        "error_subcode": 2490547,
        "error_message": "Generating the report failed. Try again later.",
        "error_user_title": "Report Failed",
        "error_user_msg": "Generating the report failed. Try again later.",
    },
    "invalid_breakdowns": {
        "error_code": 2,
        "error_subcode": 1504041,
        "error_message": "No data is available for the requested metrics and breakdowns.",
        "error_user_title": "Invalid Breakdowns",
        "error_user_msg": "No data is available for the requested metrics and breakdowns.",
    },
    "app_throttle": {
        "error_code": 4,
        "error_subcode": 1504022,
        "error_message": "Your app has exceeded the allowed number of API requests. Wait before retrying.",
        "error_user_title": "Too Many API Requests",
        "error_user_msg": "Your app has exceeded the allowed number of API requests. Wait before retrying.",
    },
}


def query_scope(query: InsightsQuery) -> str:
    """The narrowest object level the query's ``<level>.id`` filters name (``account`` without one)."""
    named = [f.field.split(".")[0] for f in query.filters if f.field.endswith(".id")]
    return max(named, key=lambda level: _SCOPE_RANK.get(level, 0), default="account")


def _async_fault_applies(query: InsightsQuery) -> Callable[[Any], bool]:
    def test(fault: Any) -> bool:
        level, until_scope = fault.params.get("level"), fault.params.get("until_scope")
        if level is not None and level != query.level:
            return False
        if until_scope is not None:
            return _SCOPE_RANK[query_scope(query)] < _SCOPE_RANK[str(until_scope)]
        return True

    return test


async def insights(call: Call) -> dict[str, Any]:
    query = parse_insights(call.params, call.state.local_now(call.acct))
    if call.request.method == "GET":
        return _insights_page(call, query, call.acct)
    reduce_data_check(call.state, call.acct, call.request.url.path, call.limit(), query, "POST")
    fault = call.state.take_fault(
        "async", call.acct.id, call.request.url.path, "POST", _async_fault_applies(query)
    )
    mode = str(fault.params.get("mode", "stuck")) if fault else "normal"
    error = RUN_ERRORS.get(str(fault.params.get("error"))) if fault else None
    if error is not None and mode == "stuck":
        mode = "failed"
    run = call.state.new_run(call.acct.id, query, mode, error)
    return {"report_run_id": run.id}


def _run(call: Call) -> ReportRun:
    run = call.state.runs.get(str(call.request.path_params["object_id"]))
    if run is None:
        raise unknown_object(str(call.request.path_params["object_id"]))
    return run


def _run_status(run: ReportRun, polls_needed: int) -> tuple[str, int]:
    if run.mode == "stuck":
        return "Job Running", 0
    if run.mode in ("failed", "skipped") and run.polls >= 1:
        return f"Job {run.mode.title()}", 0
    if run.polls >= polls_needed:
        return "Job Completed", 100
    return ("Job Not Started", 0) if run.polls == 0 else ("Job Running", 100 * run.polls // polls_needed)


def _entity_by_id(state: SimState, object_id: str) -> tuple[Account, str] | None:
    for acct in state.accounts.values():
        if object_id in acct.by_id:
            return acct, object_id
    return None


async def by_ids(call: Call) -> dict[str, Any]:
    """``GET /{version}/?ids=a,b&fields=..``: Graph's multi-object read, hidden children included."""
    ids = [i for i in call.params.get("ids", "").split(",") if i]
    if not ids:
        raise invalid_parameter("Param ids is required when no object is named in the path")
    fields = call.params.get("fields", "id").split(",")
    out: dict[str, Any] = {}
    for object_id in ids:
        found = _entity_by_id(call.state, object_id)
        if found is None:
            raise unknown_object(object_id)
        out[object_id] = _entity_json(found[0], object_id, fields)
    return out


async def report_run(call: Call) -> dict[str, Any]:
    found = _entity_by_id(call.state, str(call.request.path_params["object_id"]))
    if found is not None:  # an entity asked for by id (hidden or not)
        return _entity_json(found[0], found[1], call.params.get("fields", "id").split(","))
    run = _run(call)
    status, percent = _run_status(run, call.state.async_polls_to_complete)
    run.polls += 1
    query: InsightsQuery = run.query
    body = {
        "id": run.id,
        "account_id": run.account_id,
        "async_status": status,
        "async_percent_completion": percent,
        "date_start": query.since.isoformat(),
        "date_stop": query.until.isoformat(),
    }
    if status == "Job Failed" and run.error:
        body |= run.error  # v25.0+: why the run failed
    return body


async def report_insights(call: Call) -> dict[str, Any]:
    run = _run(call)
    if _run_status(run, call.state.async_polls_to_complete)[0] != "Job Completed" or run.polls == 0:
        raise invalid_parameter(f"Report {run.id} is not ready: poll it until async_status is Job Completed")
    return _insights_page(call, run.query, call.acct)


def graph_routes(state: SimState) -> list[Route]:
    """The Graph API routes, to be mounted after the control routes."""
    return [
        Route("/{version}/me", graph(state, me)),
        Route("/{version}/me/permissions", graph(state, my_permissions)),
        Route("/{version}/me/adaccounts", graph(state, my_ad_accounts)),
        Route("/{version}/", graph(state, by_ids)),
        Route("/{version}/act_{account_id}", graph(state, account)),
        Route("/{version}/act_{account_id}/insights", graph(state, insights), methods=["GET", "POST"]),
        Route("/{version}/act_{account_id}/{edge}", graph(state, edge)),
        Route("/{version}/{object_id}", graph(state, report_run)),
        Route("/{version}/{object_id}/insights", graph(state, report_insights)),
    ]
