"""Limits that protect the API from one caller: request body sizes per route, failed key attempts.

- :class:`BodyLimitMiddleware` answers 413 as soon as a body is known to be too large: at once
  from ``Content-Length``, else while a chunked body streams in (it is never read in full). The
  limit is per route prefix (:func:`body_limit`): the JSON API's bodies are small, plugin routes
  (store webhooks carrying an order) get more.
- :func:`check_auth_failures` / :func:`record_auth_failure` throttle failed API-key attempts per
  client address: past ``auth_max_failures`` in ``auth_failure_window_s`` the address gets 429
  (with ``Retry-After``) until the window ends, and a log line says so.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.api.errors import ApiError
from core.config import Settings, get_settings
from core.keys import auth_failures

log = structlog.get_logger(__name__)


def body_limit(path: str, settings: Settings) -> int:
    """The largest body (bytes) a request to ``path`` may send."""
    if path.startswith("/v1/plugins/"):
        return settings.max_plugin_body_bytes
    return settings.max_body_bytes


async def _refuse(scope: Scope, send: Send, limit: int) -> None:
    body = json.dumps(
        {
            "error": {
                "code": "body_too_large",
                "message": f"the request body is larger than this route's limit of {limit} bytes",
                "request_id": (scope.get("state") or {}).get("request_id"),
            }
        }
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send(
        {"type": "http.response.start", "status": 413, "headers": [*headers, (b"connection", b"close")]}
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """413 for a body over its route's limit, before the handler (or authentication) reads it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["path"], get_settings())
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > limit
            except ValueError:
                too_large = False  # the server rejects a malformed length itself
            if too_large:
                log.warning("request_body_refused", path=scope["path"], declared=int(declared), limit=limit)
                await _refuse(scope, send, limit)
                return
        received = 0
        started = refused = False

        async def counted_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Answer now and tell the app the client left: nothing more is read.
                    log.warning("request_body_refused", path=scope["path"], received=received, limit=limit)
                    refused = True
                    if not started:
                        await _refuse(scope, send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 went out already
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except Exception:
            if not refused:
                raise


#: How long an address whose failed-key count was read as zero is not asked about again (a failure
#: seen by this process asks at once; one seen by another process, within this many seconds).
CLEAN_FOR_S = 1.0
#: Addresses remembered as clean at most (the memory is dropped whole when full).
CLEAN_MAX = 10_000


class CleanAddresses:
    """Client addresses with no failed key attempts, as last read from Redis, and until when: a
    successful request from them costs no Redis round trip (one app's memory, not shared)."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def clean(self, client: str) -> bool:
        until = self._until.get(client)
        return until is not None and until > time.monotonic()

    def remember(self, client: str) -> None:
        if len(self._until) >= CLEAN_MAX:
            self._until.clear()
        self._until[client] = time.monotonic() + CLEAN_FOR_S

    def forget(self, client: str) -> None:
        self._until.pop(client, None)


class AuthGuard:
    """The failed-key throttle of one request's client address. Fails open: without Redis the API
    still authenticates (keys are checked in PostgreSQL), it only stops counting, and says so.

    An address remembered clean (:class:`CleanAddresses`) passes without a Redis round trip; a
    failure from it is counted (and the address asked about again) as from any other."""

    def __init__(
        self,
        redis: Redis | None,
        client: str,
        clean: CleanAddresses | None = None,
        connect: Callable[[], Awaitable[Redis]] | None = None,
    ) -> None:
        self.redis = redis
        self.client = client
        self.clean = clean
        self._connect = connect

    async def _redis(self) -> Redis | None:
        if self.redis is None and self._connect is not None:
            connect, self._connect = self._connect, None
            try:
                self.redis = await connect()
            except (RedisError, OSError) as exc:
                self._unavailable(exc)
        return self.redis

    async def check(self) -> None:
        if self.clean is not None and self.clean.clean(self.client):
            return
        redis = await self._redis()
        if redis is not None:
            try:
                if await check_auth_failures(redis, self.client) == 0 and self.clean is not None:
                    self.clean.remember(self.client)
            except (RedisError, OSError) as exc:
                self._unavailable(exc)

    async def record_failure(self) -> None:
        if self.clean is not None:
            self.clean.forget(self.client)
        redis = await self._redis()
        if redis is not None:
            try:
                await record_auth_failure(redis, self.client)
            except (RedisError, OSError) as exc:
                self._unavailable(exc)

    def _unavailable(self, exc: BaseException) -> None:
        log.warning("auth_throttle_unavailable", client=self.client, error_type=type(exc).__name__)


async def auth_guard(request: Request) -> AuthGuard:
    """The :class:`AuthGuard` of ``request`` (on the app's Redis pool, reached when first needed)."""
    client = client_address(request.client and (request.client.host, request.client.port))
    clean: CleanAddresses | None = getattr(request.app.state, "clean_addresses", None)
    if clean is None:
        clean = request.app.state.clean_addresses = CleanAddresses()
    return AuthGuard(None, client, clean, connect=request.app.state.resources.redis)


def client_address(scope_client: tuple[str, int] | None) -> str:
    """The caller's address as the server saw it (behind a proxy: run uvicorn with --proxy-headers)."""
    return scope_client[0] if scope_client else "unknown"


async def check_auth_failures(redis: Redis, client: str) -> int:
    """429 when ``client`` has failed authentication too often within the window; else its failures."""
    settings = get_settings()
    failures = int(await redis.get(auth_failures(client)) or 0)
    if failures >= settings.auth_max_failures:
        retry_s = max(1, int(await redis.ttl(auth_failures(client))))
        log.warning("auth_throttled", client=client, failures=failures, retry_after_s=retry_s)
        raise ApiError(
            429,
            "too_many_failed_attempts",
            f"too many failed API-key attempts from this address; retry in {retry_s}s",
            headers={"Retry-After": str(retry_s)},
        )
    return failures


async def record_auth_failure(redis: Redis, client: str) -> None:
    """Count one failed attempt of ``client`` (the window starts at its first failure)."""
    settings = get_settings()
    key = auth_failures(client)
    if await redis.incr(key) == 1 or await redis.ttl(key) < 0:
        await redis.expire(key, max(1, int(settings.auth_failure_window_s)))
