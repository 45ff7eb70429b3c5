"""The FastAPI app: ``/v1`` routes, JSON errors, request ids in the logs, plugin routers.

Served by ``metricx api --host H --port P`` (uvicorn, ``create_app`` as factory).
"""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import APIRouter, FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import __version__
from core.api import errors
from core.api.deps import Resources
from core.api.errors import documented
from core.api.guards import BodyLimitMiddleware
from core.api.routes import (
    alerts,
    connect,
    connections,
    data,
    health,
    jobs,
    prometheus,
    providers,
    summary,
    workspaces,
)
from core.config import get_settings
from core.logging import configure_logging
from core.metrics import api_latency
from core.plugins import get_registry
from core.preflight import require_encryption_keys
from core.web import mount as web_mount

log = structlog.get_logger(__name__)
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
ERRORS = documented(401, 403, 404, 422)


class RequestIdMiddleware:
    """Bind a request id (the caller's ``X-Request-ID`` or a new one) into every log line of the request.

    Pure ASGI, and the outermost layer (see :class:`MetricxAPI`): the 500 handler's log line
    and its response carry the id too. Writes the request's one access line
    (``request_finished``), sampled by ``METRICX_ACCESS_LOG_SAMPLE``; errors always.
    """

    def __init__(self, app: ASGIApp, sample: float = 1.0) -> None:
        self.app = app
        self.sample = sample

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            api_latency.labels(scope["method"], route_template(scope), str(status)).observe(
                time.perf_counter() - started
            )
            if status >= 500 or self.sample >= 1.0 or random.random() < self.sample:
                log.info(
                    "request_finished",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 1),
                )
            structlog.contextvars.clear_contextvars()


class MetricxAPI(FastAPI):
    """FastAPI with :class:`RequestIdMiddleware` outside Starlette's server-error layer."""

    def build_middleware_stack(self) -> ASGIApp:
        return RequestIdMiddleware(super().build_middleware_stack(), get_settings().access_log_sample)


def route_template(scope: Scope) -> str:
    """The matched route as a template (``/v1/workspaces/{workspace_id}/connections``), or ``unmatched``.

    Rebuilt from the path and its parameters, because FastAPI versions differ in whether the
    matched route knows the prefixes it was included under. Ids never become metric labels.
    """
    route = scope.get("route")
    if route is None:
        return "unmatched"
    names = {str(value): name for name, value in (scope.get("path_params") or {}).items()}
    template = "/".join(f"{{{names[s]}}}" if s in names else s for s in scope["path"].split("/"))
    own = getattr(route, "path", "")
    return template if template.endswith(own) else own


def _v1() -> APIRouter:
    v1 = APIRouter(prefix="/v1")
    v1.include_router(health.router)
    v1.include_router(providers.router, responses=documented(401))
    for module in (workspaces, connections, connect, jobs, data, summary, alerts):
        v1.include_router(module.router, responses=ERRORS)
    v1.include_router(connect.callback_router)
    for plugin, router in get_registry().routers:
        v1.include_router(router, prefix=f"/plugins/{plugin}", tags=[f"plugin:{plugin}"])
    return v1


def create_app() -> FastAPI:
    """Build the API (a new app each call; tests build their own). Refuses without an encryption key."""
    configure_logging()
    require_encryption_keys()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await app.state.resources.aclose()

    app = MetricxAPI(
        title="metricx",
        version=__version__,
        description="Keep ad-platform and store data fresh for many workspaces. "
        "Authenticate with `Authorization: Bearer <key>`. The operator key (METRICX_OPERATOR_KEY) "
        "manages workspaces and their API keys (`/v1/workspaces`, `/v1/workspaces/{id}`, its "
        "`/api-keys`); every other workspace route needs one of that workspace's API keys, and "
        "answers the operator key with 403. "
        "Another workspace's objects always answer 404. Failed keys are throttled per client address (429).",
        lifespan=lifespan,
        docs_url=None,  # served offline by core.web
        redoc_url=None,
    )
    app.state.resources = Resources()
    errors.install(app)
    app.add_middleware(BodyLimitMiddleware)  # inside the request id (outermost): a 413 carries one too
    # The hot route first (P7): found without walking /v1's routers (see connections.sync_now_router).
    app.include_router(connections.sync_now_router, prefix="/v1", responses=ERRORS)
    app.include_router(_v1())
    web_mount.install(app)
    app.include_router(prometheus.router)
    return app
