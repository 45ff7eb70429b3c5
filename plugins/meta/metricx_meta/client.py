"""Async Graph API client: rate limiting, usage headers, error mapping, cursor paging.

Every request waits on the shared :class:`~core.ratelimit.AccountLimiter`,
reports the usage headers of every response (errors included) and turns Meta's
error envelope into the core error tree. The access token travels in the
``Authorization`` header and is redacted from every message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import structlog

from core.errors import MetricxError, RateLimited, TransientError
from core.ratelimit import AccountLimiter
from metricx_meta.errors import GraphError, ReduceDataError, map_graph_error, parse_usage, redact
from metricx_meta.settings import MetaSettings

log = structlog.get_logger(__name__)

Params = Mapping[str, str | int]
JSONDict = dict[str, Any]


class MetaClient:
    """One account's view of the Graph API, bound to a token, an httpx client and a limiter."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        limiter: AccountLimiter,
        settings: MetaSettings,
        access_token: str,
    ) -> None:
        self._http = http
        self._limiter = limiter
        self._settings = settings
        self._token = access_token
        self._root = f"{settings.base_url.rstrip('/')}/{settings.api_version}"

    @property
    def settings(self) -> MetaSettings:
        return self._settings

    def redact(self, text: str) -> str:
        return redact(text, self._token)

    def scrub(self, exc: MetricxError) -> MetricxError:
        """Remove the token from an error raised while handling a response (records echo values)."""
        exc.message = self.redact(exc.message)
        exc.args = (exc.message,)
        return exc

    async def get(self, path: str, params: Params | None = None) -> JSONDict:
        """GET ``/{version}/{path}``; retries transient failures a few times."""
        return await self._with_retries("GET", path, params or {})

    async def post(self, path: str, params: Params | None = None) -> JSONDict:
        """POST ``/{version}/{path}`` with form parameters."""
        return await self._with_retries("POST", path, params or {})

    async def pages(self, path: str, params: Params) -> AsyncIterator[list[JSONDict]]:
        """Yield ``data`` page by page, following ``paging.cursors.after`` while ``paging.next`` exists.

        When Meta asks to reduce the amount of data, the same page is asked
        again with half the ``limit`` (down to ``min_page_size``).
        """
        limit = int(params.get("limit", self._settings.page_size))
        after: str | None = None
        while True:
            query = {**params, "limit": limit, **({"after": after} if after else {})}
            try:
                body = await self.get(path, query)
            except ReduceDataError:
                if limit <= self._settings.min_page_size:
                    raise
                limit = max(self._settings.min_page_size, limit // 2)
                log.info("meta_reduce_limit", path=path, limit=limit)
                continue
            data = body.get("data")
            if not isinstance(data, list):
                raise TransientError(f"Meta API returned a page without a data list for {path}")
            yield data
            paging = body.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after")
            if not paging.get("next") or not after:
                return

    async def _with_retries(self, method: str, path: str, params: Params) -> JSONDict:
        attempt = 0
        while True:
            try:
                return await self._send(method, path, params)
            except ReduceDataError:
                raise
            except TransientError as exc:
                if attempt >= self._settings.max_retries:
                    raise
                delay = self._settings.retry_backoff_s * 2**attempt
                attempt += 1
                log.warning(
                    "meta_request_retry", path=path, attempt=attempt, delay_s=delay, error=exc.message
                )
                await asyncio.sleep(delay)

    async def _send(self, method: str, path: str, params: Params) -> JSONDict:
        await self._limiter.acquire()
        try:
            response = await self._http.request(
                method,
                f"{self._root}/{path.lstrip('/')}",
                params=dict(params),
                headers={"Authorization": f"Bearer {self._token}"},
                timeout=self._settings.request_timeout_s,
            )
        except httpx.TransportError as exc:
            message = self.redact(f"Meta API request to {path} failed: {type(exc).__name__}: {exc}")
            raise TransientError(message) from None
        retry_after = await self._report_usage(response)
        body = _json_body(response)
        error = GraphError.from_body(body)
        if error is None and response.status_code < 400:
            if not isinstance(body, dict):
                raise TransientError(f"Meta API returned an empty or corrupt body for {path} (HTTP 200)")
            return body
        raise await self._failure(response.status_code, error, retry_after, path)

    async def _failure(
        self, status: int, error: GraphError | None, retry_after: float | None, path: str
    ) -> MetricxError:
        exc = map_graph_error(
            status, error, retry_after_s=retry_after, default_retry_s=self._settings.throttle_default_retry_s
        )
        self.scrub(exc)
        if isinstance(exc, RateLimited):
            await self._limiter.block(exc.retry_after_s, scope=exc.scope)
        log.warning(
            "meta_request_failed",
            path=path,
            status=status,
            code=error.code if error else None,
            subcode=error.subcode if error else None,
            fbtrace_id=error.fbtrace_id if error else None,
            kind=exc.kind,
        )
        return exc

    async def _report_usage(self, response: httpx.Response) -> float | None:
        usage = parse_usage(response.headers)
        if usage is None:
            return None
        await self._limiter.report_usage(usage.max_pct, regain_s=usage.regain_s)
        if usage.max_pct >= self._settings.usage_block_pct:
            await self._limiter.block(usage.regain_s or 60.0)
            log.info("meta_usage_high", pct=usage.max_pct, regain_s=usage.regain_s)
        return usage.regain_s


def _json_body(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return json.loads(response.content)
    except ValueError:
        return None
