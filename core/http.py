"""ProviderHTTP: the one HTTP layer every provider call goes through.

One call, in order::

    limiter.acquire()                  wait for blocks, usage slowdown and steady pacing; counts the try
    -> httpx request                   with the plugin's headers (and ``auth`` headers, when given)
    -> transport errors mapped         ONE table (``TRANSPORT_ERRORS``): timeouts, resets, refused
    -> api.usage(response)             fed to the limiter (usage %, blocks, steady rate): errors too
    -> api.classify(response)          the platform's error envelope -> the core error tree
    -> retry here, or raise

Where a failed call is retried (this module is the only place; plugins never loop over a request):

- **In the request, when the wait is short.** A throttle (:class:`~core.errors.RateLimited`) whose
  ``retry_after_s`` is at most ``policy.max_wait_s`` is retried up to ``policy.throttle_retries``
  times: the wait is the limiter's block (shared with every worker, counted as seconds throttled).
  A transient failure is retried up to ``policy.transient_retries`` times after a small doubling
  backoff (``policy.backoff_s``), when ``api.retry_in_request(error)`` allows it. A rejected token is
  re-sent once after ``auth.refresh()`` when the call has an ``auth``.
- **Otherwise the error is raised** and the sync engine turns it into the job's arq retry
  (:class:`~core.errors.TransientError`: backoff, up to ``max_tries``) or a deferral
  (:class:`~core.errors.RateLimited`: the connection waits until ``retry_after_s``).

Every try is one ``limiter.acquire()``, so ``limiter.calls`` (written to ``sync_runs.api_calls``)
counts every request sent, retries included.

:meth:`ProviderHTTP.stream` is the same call for answers too large to hold: a successful answer's
body is left unread for the plugin to parse incrementally (``response.aiter_bytes()``); an error
answer (HTTP status >= 400) is read, classified and retried exactly as above. A failure reported
inside a successful body (e.g. an error after streamed batches) is the plugin's to detect.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import httpx
import structlog

from core.errors import (
    AuthError,
    ConfigError,
    MetricxError,
    PermanentError,
    RateLimited,
    TransientError,
)

if TYPE_CHECKING:
    from core.ratelimit import AccountLimiter

log = structlog.get_logger(__name__)

DEFAULT_THROTTLE_S = 60.0


class ConnectionLost(TransientError):
    """The connection broke while the answer was on its way (reset, closed mid-body)."""


#: The one mapping of httpx's transport errors to the core error tree: (httpx error, core error,
#: what happened). The first row that matches wins, so subclasses come before their bases.
TRANSPORT_ERRORS: tuple[tuple[type[httpx.RequestError], type[MetricxError], str], ...] = (
    (httpx.TimeoutException, TransientError, "did not answer in time"),
    # The request could not even be built (a control character in a token, a base URL that is no
    # URL): the caller's input, which no retry fixes.
    (httpx.LocalProtocolError, ConfigError, "request could not be sent (a header or URL is malformed)"),
    (httpx.UnsupportedProtocol, ConfigError, "request could not be sent (the URL is not http(s))"),
    (httpx.RemoteProtocolError, ConnectionLost, "closed the connection mid-answer"),
    (httpx.ReadError, ConnectionLost, "connection broke while reading the answer"),
    (httpx.WriteError, ConnectionLost, "connection broke while sending the request"),
    (httpx.ConnectError, TransientError, "unreachable"),
    (httpx.TransportError, TransientError, "request failed"),
    (httpx.TooManyRedirects, PermanentError, "redirected too many times"),
    (httpx.RequestError, TransientError, "request failed"),
)


def map_transport_error(exc: httpx.RequestError, api_name: str, method: str, url: str) -> MetricxError:
    """The core error for an httpx failure; names the path, never the query (tokens live there)."""
    path = urlsplit(url).path or "/"
    for httpx_error, core_error, what in TRANSPORT_ERRORS:
        if isinstance(exc, httpx_error):
            return core_error(f"{api_name} {what} ({type(exc).__name__}) on {method} {path}")
    raise AssertionError("unreachable: httpx.RequestError is the last row")  # pragma: no cover


def parse_retry_after(response: httpx.Response, default_s: float) -> float:
    """``Retry-After`` in seconds (a number or an HTTP date); ``default_s`` when absent or unreadable."""
    value = response.headers.get("Retry-After")
    if not value:
        return default_s
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default_s
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How :class:`ProviderHTTP` retries one call in the request (see the module docstring).

    ``transient_retries``: transient failures retried here (then the job's retry takes over);
    ``backoff_s``: the first delay before such a retry, doubling; ``throttle_retries``: throttles
    waited out here; ``max_wait_s``: the longest throttle wait spent in the request (a longer one
    is raised, and the engine defers the sync instead of holding a worker slot).
    """

    transient_retries: int = 1
    backoff_s: float = 0.5
    throttle_retries: int = 1
    max_wait_s: float = 5.0


@dataclass(frozen=True, slots=True)
class Usage:
    """What one response says about the quota; :class:`ProviderHTTP` feeds it to the limiter.

    ``pct`` (0-100) goes to ``limiter.report_usage(pct, regain_s=...)`` (slow down from 70%, block at
    95%); ``block_s`` blocks ``scope`` now; ``rate_per_s`` / ``burst`` set the steady request rate
    every worker paces at (``limiter.configure``), e.g. a leaky bucket read from a header.
    """

    pct: float | None = None
    regain_s: float | None = None
    block_s: float | None = None
    scope: str = "account"
    rate_per_s: float | None = None
    burst: int = 1


class ProviderAPI:
    """What :class:`ProviderHTTP` needs to know about one platform API; plugins subclass it.

    Override :meth:`classify` to read the platform's error envelope, :meth:`usage` to read its quota
    headers, and set ``policy``. The defaults map HTTP statuses only.
    """

    #: Names the platform in error messages ("Meta API", "Shopify").
    name: str = "provider API"
    policy: RetryPolicy = RetryPolicy()

    def classify(self, response: httpx.Response) -> MetricxError | None:
        """None for a usable answer, else the core error it means (not raised: ProviderHTTP decides)."""
        status = response.status_code
        if status < 400:
            return None
        if status == 401:
            return AuthError(
                f"{self.name} rejected the credentials (HTTP 401). Please reconnect the account."
            )
        if status == 429:
            wait = parse_retry_after(response, DEFAULT_THROTTLE_S)
            return RateLimited(f"{self.name} throttled the request; retry in {wait:.0f}s", wait)
        if status >= 500:
            return TransientError(f"{self.name} answered HTTP {status}")
        if status in (400, 403, 404, 422):
            return ConfigError(f"{self.name} refused the request (HTTP {status})")
        return PermanentError(f"{self.name} answered HTTP {status}")

    def usage(self, response: httpx.Response) -> Usage | None:
        """The quota this response reports (headers, or a body's cost field); None when it says nothing."""
        return None

    def retry_in_request(self, error: MetricxError) -> bool:
        """Whether a transient ``error`` may be retried in the request (else the job retries)."""
        return True


class RequestAuth(Protocol):
    """Credentials that can be refreshed: ProviderHTTP re-sends a rejected call once after ``refresh``."""

    def headers(self) -> Awaitable[Mapping[str, str]]:
        """The headers that carry the current token."""
        ...

    def refresh(self) -> Awaitable[None]:
        """Get a new token (raise :class:`~core.errors.AuthError` when none can be had)."""
        ...


@dataclass(frozen=True, slots=True)
class _Call:
    method: str
    url: str
    params: Mapping[str, Any] | None
    json: Any
    data: Mapping[str, Any] | None
    headers: Mapping[str, str] | None
    timeout_s: float | None
    auth: RequestAuth | None


class ProviderHTTP:
    """The HTTP client a provider gets in ``ProviderContext.http``: one sync's account and limiter."""

    def __init__(self, client: httpx.AsyncClient, limiter: AccountLimiter) -> None:
        self._client = client
        self.limiter = limiter

    async def get(self, api: ProviderAPI, url: str, **kwargs: Any) -> httpx.Response:
        """:meth:`request` with ``GET``."""
        return await self.request(api, "GET", url, **kwargs)

    async def post(self, api: ProviderAPI, url: str, **kwargs: Any) -> httpx.Response:
        """:meth:`request` with ``POST``."""
        return await self.request(api, "POST", url, **kwargs)

    async def request(
        self,
        api: ProviderAPI,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        auth: RequestAuth | None = None,
    ) -> httpx.Response:
        """Send one call (with the retries the module docstring lists); the answer ``api`` accepts.

        Raises the core error ``api.classify`` (or the transport table) gives once no retry is left.
        """
        call = _Call(method, url, params, json, data, headers, timeout_s, auth)
        return await self._send(api, call, stream=False)

    @asynccontextmanager
    async def stream(
        self,
        api: ProviderAPI,
        method: str,
        url: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        auth: RequestAuth | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """:meth:`request` whose successful answer is not read: iterate its body inside the block.

        Error answers (status >= 400) are read and handled as :meth:`request` handles them; the
        connection is released when the block exits.
        """
        call = _Call(method, url, None, json, None, headers, timeout_s, auth)
        response = await self._send(api, call, stream=True)
        try:
            yield response
        finally:
            await response.aclose()

    async def _send(self, api: ProviderAPI, call: _Call, *, stream: bool) -> httpx.Response:
        auth = call.auth
        policy = api.policy
        throttles = transients = 0
        refreshed = False
        while True:
            outcome = await self._try(api, call, stream=stream)
            if isinstance(outcome, httpx.Response):
                return outcome
            error = outcome
            if isinstance(error, RateLimited):
                await self.limiter.block(error.retry_after_s, scope=error.scope)
                # The whole wait counts: usage headers may have blocked the account for longer.
                wait_s = max(error.retry_after_s, await self.limiter.blocked_for())
                if throttles < policy.throttle_retries and wait_s <= policy.max_wait_s:
                    throttles += 1  # the next acquire() waits the block out
                    log.info("provider_throttled_retry", api=api.name, retry_after_s=error.retry_after_s)
                    continue
            elif isinstance(error, AuthError) and auth is not None and not refreshed:
                refreshed = True
                await auth.refresh()
                continue
            elif (
                isinstance(error, TransientError)
                and transients < policy.transient_retries
                and api.retry_in_request(error)
            ):
                delay = policy.backoff_s * 2**transients
                transients += 1
                log.warning("provider_request_retry", api=api.name, delay_s=delay, error=error.message)
                await asyncio.sleep(delay)
                continue
            raise error

    async def _try(
        self, api: ProviderAPI, call: _Call, *, stream: bool = False
    ) -> httpx.Response | MetricxError:
        await self.limiter.acquire()
        headers = {**(call.headers or {}), **(await call.auth.headers() if call.auth else {})}
        extra: dict[str, Any] = {} if call.timeout_s is None else {"timeout": call.timeout_s}
        try:
            request = self._client.build_request(
                call.method,
                call.url,
                params=call.params,
                json=call.json,
                data=call.data,
                headers=headers,
                **extra,
            )
            response = await self._client.send(request, stream=stream)
            if stream and response.status_code < 400:
                await self._feed(api.usage(response))
                return response  # the body is the caller's to read (ProviderHTTP.stream)
            if stream:
                await response.aread()
                await response.aclose()
        except httpx.RequestError as exc:
            return map_transport_error(exc, api.name, call.method, call.url)
        # httpx links a read response and its stream both ways; that cycle would keep every body
        # (megabytes on a backfill) alive until a full garbage collection. The body is read: unlink.
        response.stream = httpx.ByteStream(response.content)
        await self._feed(api.usage(response))
        return api.classify(response) or response

    async def _feed(self, usage: Usage | None) -> None:
        if usage is None:
            return
        if usage.rate_per_s is not None:
            self.limiter.configure(rate_per_s=usage.rate_per_s, burst=usage.burst)
        if usage.pct is not None:
            await self.limiter.report_usage(usage.pct, regain_s=usage.regain_s)
        if usage.block_s:
            await self.limiter.block(usage.block_s, scope=usage.scope)
