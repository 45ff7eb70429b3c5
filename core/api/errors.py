"""JSON errors with a stable ``code`` and a clear ``message``; the only place errors become HTTP.

Every error body has the shape ``{"error": {"code": ..., "message": ..., "request_id": ...}}``.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import AuthError, ConfigError, MetricxError, RateLimited, TransientError

log = structlog.get_logger(__name__)


class ApiError(Exception):
    """An error the API answers with: HTTP status, stable code, message for a person."""

    def __init__(
        self, status_code: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.headers = headers


DESCRIPTIONS = {
    401: "Missing, unknown or revoked key",
    403: "Wrong kind of key: the operator key is required, or (with the operator key) a workspace API key is",
    404: "Not found (also another workspace's object)",
    409: "Conflicts with the object's state",
    422: "Invalid request, or the provider rejected the account",
    502: "The provider could not be reached",
    503: "The provider is throttling this account",
}


def documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, all with the :class:`ErrorResponse` body."""
    from core.api.schemas import ErrorResponse

    return {code: {"model": ErrorResponse, "description": DESCRIPTIONS[code]} for code in codes}


def not_found(what: str) -> ApiError:
    """404 for a missing object, and for another workspace's object (never 403, never its content)."""
    return ApiError(404, f"{what}_not_found", f"{what.replace('_', ' ')} not found")


def conflict(code: str, message: str) -> ApiError:
    return ApiError(409, code, message)


def provider_error(exc: MetricxError) -> ApiError:
    """Map what a provider raised while validating a new connection."""
    if isinstance(exc, AuthError):
        return ApiError(422, "invalid_credentials", f"the provider rejected the credentials: {exc.message}")
    if isinstance(exc, RateLimited):
        return ApiError(
            503,
            "provider_rate_limited",
            f"the provider is throttling this account; retry in {exc.retry_after_s:.0f}s",
            headers={"Retry-After": str(max(1, int(exc.retry_after_s)))},
        )
    if isinstance(exc, TransientError):
        return ApiError(502, "provider_unavailable", f"the provider could not be reached: {exc.message}")
    if isinstance(exc, ConfigError):
        return ApiError(422, "invalid_config", exc.message)
    return ApiError(422, "provider_error", exc.message)


def _body(request: Request, code: str, message: str, **extra: Any) -> dict[str, Any]:
    request_id = getattr(request.state, "request_id", None)
    return {"error": {"code": code, "message": message, "request_id": request_id, **extra}}


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(
        _body(request, exc.code, exc.message), status_code=exc.status_code, headers=exc.headers
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}
    code = codes.get(exc.status_code, f"http_{exc.status_code}")
    return JSONResponse(
        _body(request, code, str(exc.detail)),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def _clean(error: dict[str, Any]) -> dict[str, Any]:
    # Never echo the submitted input back: it may be a token.
    return {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type", "")}


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [_clean(e) for e in exc.errors()]
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"] if p != "body") or "request"
    message = f"{where}: {first['msg']}"
    return JSONResponse(_body(request, "validation_error", message, details=details), status_code=422)


async def _metricx_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MetricxError)
    api = (
        provider_error(exc)
        if not isinstance(exc, ConfigError)
        else ApiError(400, "invalid_request", exc.message)
    )
    return await _api_error(request, api)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # This handler runs outside the request-id middleware, whose log context is gone by now: name
    # the id explicitly, so the id a user quotes from the response finds this line.
    log.exception(
        "request_failed",
        error_type=type(exc).__name__,
        request_id=getattr(request.state, "request_id", None),
        method=request.method,
        path=request.url.path,
    )
    return JSONResponse(
        _body(request, "internal_error", "internal error; quote the request id when reporting it"),
        status_code=500,
    )


def install(app: FastAPI) -> None:
    """Register the JSON error handlers on ``app``."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(MetricxError, _metricx_error)
    app.add_exception_handler(Exception, _unexpected)
