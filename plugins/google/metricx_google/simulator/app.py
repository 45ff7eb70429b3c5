"""The Google Ads REST API as an ASGI app: OAuth token endpoint, search, searchStream, accessible customers.

Behaviour follows API-FACTS.md part B: 10,000-row pages bound to their query,
array-wrapped searchStream batches and errors, the GoogleAdsFailure envelope,
camelCase keys, int64 as strings, doubles as numbers, ``request-id`` headers.
Control endpoints live under ``/_sim/``: the shared protocol (core.testing.sim_app) and Google's own
(:mod:`metricx_google.simulator.control`). Faults in Google's shapes: ``throttle`` (scope developer:
RESOURCE_EXHAUSTED, else RESOURCE_TEMPORARILY_EXHAUSTED with ``retryDelay`` = ``retry_after_s``),
``server_error`` (``status``, internalError ``code``), ``timeout`` (``seconds``), ``token_expired`` /
``token_revoked`` (401 OAUTH_TOKEN_EXPIRED / OAUTH_TOKEN_INVALID; revoked also refuses the refresh
grant), ``malformed`` (``row``: a costMicros that is no integer; ``truncated``: a cut searchStream;
``empty``), ``version_sunset`` (400 UNSUPPORTED_VERSION, or with ``answer: "not_found"`` a plain 404).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import time
from datetime import date
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.testing.sim_app import note_account, simulator_app
from core.testing.simulator import Fault
from metricx_google.simulator import gaql
from metricx_google.simulator.control import control_routes
from metricx_google.simulator.oauth import auth_routes, exchange_code
from metricx_google.simulator.service import ancestors, corrupt_first_metric_row, execute
from metricx_google.simulator.state import SimState
from metricx_google.simulator.world import Account

PAGE_SIZE = 10_000
PAGE_TOKEN_TTL_S = 3600
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_VERSION = re.compile(r"^v(\d+)$")
_RATE_NAME = {
    "ACCOUNT": "Requests per service per method",
    "DEVELOPER": "Number of operations for basic access",
}
_CUSTOMER_PATH = re.compile(r"^customers/(?P<cid>[^/:]+)/googleAds:(?P<method>search|searchStream)$")


class ApiError(Exception):
    """An error answered in the GoogleAdsFailure envelope."""

    def __init__(
        self,
        http_status: int,
        kind: str,
        code: str,
        message: str,
        *,
        retry_delay_s: float | None = None,
        rate_scope: str = "ACCOUNT",
    ) -> None:
        super().__init__(message)
        self.http_status, self.kind, self.code, self.message = http_status, kind, code, message
        self.retry_delay_s, self.rate_scope = retry_delay_s, rate_scope

    def body(self, version: str, request_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {"errorCode": {self.kind: self.code}, "message": self.message}
        if self.kind == "quotaError":
            quota: dict[str, Any] = {"rateScope": self.rate_scope, "rateName": _RATE_NAME[self.rate_scope]}
            if self.retry_delay_s is not None:
                quota["retryDelay"] = f"{self.retry_delay_s:g}s"
            error["details"] = {"quotaErrorDetails": quota}
        failure = {
            "@type": f"type.googleapis.com/google.ads.googleads.{version}.errors.GoogleAdsFailure",
            "errors": [error],
            "requestId": request_id,
        }
        status = _STATUS.get(self.http_status, "UNKNOWN")
        top = {
            "INVALID_ARGUMENT": "Request contains an invalid argument.",
            "UNAUTHENTICATED": "Request had invalid authentication credentials.",
            "PERMISSION_DENIED": "The caller does not have permission",
            "RESOURCE_EXHAUSTED": "Resource has been exhausted (e.g. check quota).",
        }.get(status, "Internal error encountered.")
        return {"error": {"code": self.http_status, "message": top, "status": status, "details": [failure]}}


class PlainNotFound(Exception):
    """Google's answer to a long-gone version: a plain-text 404, not an envelope."""


def _throttled(fault: Fault) -> ApiError:
    """A throttle fault as Google answers it: the daily operations quota at developer scope
    (RESOURCE_EXHAUSTED), otherwise a short-term limit at account scope (with ``retryDelay``)."""
    delay = fault.params.get("retry_after_s")
    if fault.params.get("scope") == "developer":
        return ApiError(
            429,
            "quotaError",
            "RESOURCE_EXHAUSTED",
            "Too many requests.",
            retry_delay_s=float(delay) if delay is not None else None,
            rate_scope="DEVELOPER",
        )
    return ApiError(
        429,
        "quotaError",
        "RESOURCE_TEMPORARILY_EXHAUSTED",
        "Too many requests. Retry in a while.",
        retry_delay_s=float(delay) if delay is not None else 30,
    )


def _page_token(offset: int, binding: str) -> str:
    raw = json.dumps({"o": offset, "h": binding, "t": int(time.time())}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _read_page_token(token: str, binding: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset, bound, issued = int(data["o"]), str(data["h"]), int(data["t"])
    except (ValueError, KeyError, TypeError):
        raise ApiError(400, "requestError", "INVALID_PAGE_TOKEN", "Page token is invalid.") from None
    if bound != binding:
        raise ApiError(400, "requestError", "INVALID_PAGE_TOKEN", "Page token is invalid.")
    if time.time() - issued > PAGE_TOKEN_TTL_S:
        raise ApiError(400, "requestError", "EXPIRED_PAGE_TOKEN", "Page token has expired.")
    return offset


# What a long-retired version's path answers: plain text, no envelope (seen in
# https://github.com/google-marketing-solutions/adios/issues/47: '"Not Found" is not valid JSON').
_NOT_FOUND_TEXT = "Not Found"
# Google's sunset dates, from its sunset reminders (developers.google.com/ads/blog/posts/2026/...):
# from that day a version answers UNSUPPORTED_VERSION ("Version vN is deprecated. Requests to this
# version will be blocked."), and some weeks later its paths are gone (plain-text 404).
SUNSETS = {
    "v19": date(2026, 2, 11),
    "v20": date(2026, 6, 10),
    "v21": date(2026, 8, 5),
    "v22": date(2026, 10, 7),
}
GONE_AFTER_DAYS = 28


def retired_answer(version: str, today: date) -> str | None:
    """``"unsupported"`` from a version's sunset, ``"not_found"`` once it is long gone, else None."""
    sunset = SUNSETS.get(version)
    if sunset is None or today < sunset:
        return None
    return "not_found" if (today - sunset).days >= GONE_AFTER_DAYS else "unsupported"


def _row_mode(fault: Fault) -> bool:
    return str(fault.params.get("mode", "row")) == "row"


class GoogleAdsSimulator:
    """Request handlers over one :class:`SimState`."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    async def token(self, request: Request) -> Response:
        """``POST /token``: the OAuth refresh-token grant."""
        # Parsed by hand: Starlette's form parser needs python-multipart for nothing more than this.
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if (
            form.get("client_id") != self.state.client_id
            or form.get("client_secret") != self.state.client_secret
        ):
            return JSONResponse(
                {"error": "invalid_client", "error_description": "The OAuth client was not found."}, 401
            )
        if form.get("grant_type") == "authorization_code":
            return exchange_code(self.state, form)
        if form.get("grant_type") != "refresh_token":
            return JSONResponse(
                {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}, 400
            )
        refresh_token = str(form.get("refresh_token") or "")
        revoked = self.state.take_fault("token_revoked", None, request.url.path, request.method)
        idle = bool(refresh_token) and self.state.idle_revoked(refresh_token)
        if not refresh_token or refresh_token in self.state.revoked or revoked is not None or idle:
            self.state.stats["token_refusals"] += 1
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}, 400
            )
        access_token, lifetime = self.state.mint(refresh_token)
        return JSONResponse(
            {
                "access_token": access_token,
                "expires_in": lifetime,
                "scope": "https://www.googleapis.com/auth/adwords",
                "token_type": "Bearer",
            }
        )

    async def api(self, request: Request) -> Response:
        """Every ``/{version}/...`` call: accessible customers, search and searchStream."""
        state = self.state
        version, rest = request.path_params["version"], request.path_params["rest"]
        request_id = secrets.token_urlsafe(16)
        match = _CUSTOMER_PATH.match(rest)
        stream = bool(match and match.group("method") == "searchStream")
        state.stats["api_calls"] += 1
        note_account(request, match.group("cid") if match else None)
        try:
            if rest == "customers:listAccessibleCustomers" and request.method == "GET":
                state.stats["calls_list_accessible_customers"] += 1
                await self._preflight(request, version, None)
                names = [
                    f"customers/{a.customer_id}" for a in state.accounts.values() if a.manager_id is None
                ]
                return JSONResponse({"resourceNames": names}, headers={"request-id": request_id})
            if not match or request.method != "POST":
                return JSONResponse(
                    {"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}}, 404
                )
            state.stats[f"calls_{match.group('method')}"] += 1
            state.stats[f"calls_customer_{match.group('cid')}"] += 1
            return await self._search(request, version, match.group("cid"), stream, request_id)
        except PlainNotFound:
            return Response(_NOT_FOUND_TEXT, 404, media_type="text/plain")
        except ApiError as exc:
            body: Any = exc.body(version, request_id)
            return JSONResponse(
                [body] if stream else body, exc.http_status, headers={"request-id": request_id}
            )

    async def _preflight(self, request: Request, version: str, customer_id: str | None) -> None:
        """Version, token and injected faults, in the order Google checks them."""
        state, path, method = self.state, request.url.path, request.method
        found = _VERSION.match(version)
        sunset = state.take_fault(
            "version_sunset", customer_id, path, method, lambda f: f.params.get("version") in (None, version)
        )
        retired = retired_answer(version, state.now().date())
        if (sunset is not None and sunset.params.get("answer") == "not_found") or retired == "not_found":
            raise PlainNotFound()
        if sunset is not None or retired or not found or int(found.group(1)) < state.min_version:
            raise ApiError(
                400,
                "requestError",
                "UNSUPPORTED_VERSION",
                f"Version {version} is deprecated. Requests to this version will be blocked.",
            )
        auth = request.headers.get("authorization", "")
        code = state.check_access_token(auth[7:]) if auth.startswith("Bearer ") else "OAUTH_TOKEN_INVALID"
        if code is None and state.take_fault("token_revoked", customer_id, path, method):
            code = "OAUTH_TOKEN_INVALID"
        if code is None and state.take_fault("token_expired", customer_id, path, method):
            code = "OAUTH_TOKEN_EXPIRED"
        if code is not None:
            state.stats["auth_failures"] += 1
            raise ApiError(401, "authenticationError", code, "Authentication of the request failed.")
        # Every query is one operation of the developer token (Explorer: 2,880 a day; /_sim/config).
        developer = request.headers.get("developer-token") or "(no developer token)"
        resets_in = state.spend_operation(developer)
        if resets_in is not None:
            raise ApiError(
                429,
                "quotaError",
                "RESOURCE_EXHAUSTED",
                f"Too many requests. Retry in {resets_in:.0f} seconds.",
                retry_delay_s=round(resets_in),
                rate_scope="DEVELOPER",
            )
        slow = state.take_fault("timeout", customer_id, path, method)
        if slow is not None:
            await asyncio.sleep(float(slow.params.get("seconds", 1.0)))
        if (fault := state.take_fault("throttle", customer_id, path, method)) is not None:
            raise _throttled(fault)
        if (fault := state.take_fault("server_error", customer_id, path, method)) is not None:
            code = str(fault.params.get("code", "INTERNAL_ERROR"))
            raise ApiError(
                int(fault.params.get("status", 500)), "internalError", code, "An internal error has occurred."
            )

    def _account_for(self, request: Request, customer_id: str) -> Account:
        state = self.state
        if not customer_id.isdigit():
            raise ApiError(400, "requestError", "INVALID_CUSTOMER_ID", "Invalid customer ID.")
        account = state.accounts.get(customer_id)
        login = request.headers.get("login-customer-id")
        if login is not None and not login.isdigit():
            raise ApiError(400, "requestError", "INVALID_LOGIN_CUSTOMER_ID", "Invalid login-customer-id.")
        denied = ApiError(
            403,
            "authorizationError",
            "USER_PERMISSION_DENIED",
            "User doesn't have permission to access customer. Note: If you're accessing a client customer, "
            "the manager's customer id must be set in the 'login-customer-id' header.",
        )
        if account is None:
            raise denied
        if login is None and account.manager_id is not None:
            raise denied
        # login-customer-id may name any manager above the account, not only its direct parent.
        if login is not None and login != customer_id and login not in ancestors(account, state.accounts):
            raise denied
        if account.status != "ENABLED":
            raise ApiError(
                403, "authorizationError", "CUSTOMER_NOT_ENABLED", "The customer account is not enabled."
            )
        return account

    async def _search(
        self, request: Request, version: str, customer_id: str, stream: bool, request_id: str
    ) -> Response:
        state = self.state
        await self._preflight(request, version, customer_id)
        account = self._account_for(request, customer_id)
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "requestError", "INVALID_INPUT", "Invalid JSON payload.") from None
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            raise ApiError(400, "queryError", "QUERY_ERROR", "The query is missing.")
        if "pageSize" in body:
            raise ApiError(
                400, "requestError", "PAGE_SIZE_NOT_SUPPORTED", "Setting the page size is not supported."
            )
        try:
            query = gaql.parse(body["query"])
        except gaql.QueryError as exc:
            raise ApiError(400, "queryError", exc.code, exc.message) from None
        if query.metrics and account.manager:
            raise ApiError(
                400,
                "queryError",
                "REQUESTED_METRICS_FOR_MANAGER",
                "Metrics cannot be requested for a manager account. To retrieve metrics, issue separate "
                "requests against each client account under the manager account.",
            )
        rows = execute(query, account, state.accounts, state.now())
        path = request.url.path
        if query.metrics and state.peek_fault("malformed", customer_id, path, "POST", _row_mode):
            if corrupt_first_metric_row(rows):
                state.take_fault("malformed", customer_id, path, "POST", _row_mode)
        mask = gaql.field_mask(query)
        headers = {"request-id": request_id}
        if stream:
            return self._stream_response(rows, mask, request_id, customer_id, path)
        binding = hashlib.sha256(f"{customer_id}|{query.text}".encode()).hexdigest()[:16]
        offset = _read_page_token(body["pageToken"], binding) if body.get("pageToken") else 0
        page = rows[offset : offset + PAGE_SIZE]
        result: dict[str, Any] = {"fieldMask": mask, "queryResourceConsumption": str(len(rows) * 10 + 100)}
        if page:
            result["results"] = page
        if offset + PAGE_SIZE < len(rows):
            result["nextPageToken"] = _page_token(offset + PAGE_SIZE, binding)
        return JSONResponse(result, headers=headers)

    def _stream_response(
        self, rows: list[dict[str, Any]], mask: str, request_id: str, customer_id: str, path: str
    ) -> Response:
        batches: list[dict[str, Any]] = []
        for start in range(0, max(1, len(rows)), PAGE_SIZE):
            batch: dict[str, Any] = {"fieldMask": mask, "requestId": request_id}
            if rows[start : start + PAGE_SIZE]:
                batch["results"] = rows[start : start + PAGE_SIZE]
            batches.append(batch)
        content = json.dumps(batches, separators=(",", ":")).encode()
        cut = self.state.take_fault("malformed", customer_id, path, "POST", lambda f: not _row_mode(f))
        if cut is not None:
            content = b"" if cut.params["mode"] == "empty" else content[: max(1, len(content) // 2)]
        return Response(content, 200, media_type="application/json", headers={"request-id": request_id})


def create_app(state: SimState | None = None) -> Starlette:
    """The simulator as an ASGI app on the shared base; ``app.state.sim`` holds its :class:`SimState`."""
    sim = GoogleAdsSimulator(state or SimState())
    routes = [
        Route("/token", sim.token, methods=["POST"]),
        *auth_routes(sim.state),
        Route("/{version}/{rest:path}", sim.api, methods=["GET", "POST"]),
    ]
    return simulator_app(sim.state, routes, control=control_routes(sim.state))
