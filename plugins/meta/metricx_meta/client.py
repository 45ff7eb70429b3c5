"""Async Graph API client over the core's ProviderHTTP: Meta's error envelope, usage headers, paging.

:class:`MetaAPI` tells :class:`core.ProviderHTTP` how to read Meta: the error envelope becomes the
core error tree (:mod:`metricx_meta.errors`), the usage headers of every response (errors included)
feed the shared limiter, and transient failures are retried in the request up to ``max_retries``
(except "reduce the amount of data", which :meth:`MetaClient.pages` answers with a smaller page).
The access token travels in the ``Authorization`` header and is redacted from every message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import structlog

from core import SCOPE_APP, MetricxError, ProviderAPI, ProviderHTTP, RetryPolicy, TransientError, Usage
from metricx_meta.errors import GraphError, ReduceDataError, map_graph_error, parse_usage, redact
from metricx_meta.settings import MetaSettings

log = structlog.get_logger(__name__)

Params = Mapping[str, str | int]
JSONDict = dict[str, Any]


class MetaAPI(ProviderAPI):
    """How ProviderHTTP reads the Graph API for one token."""

    name = "Meta API"

    def __init__(self, settings: MetaSettings, access_token: str, *secrets: str) -> None:
        self._settings = settings
        self._token = access_token
        self._secrets = secrets
        self.policy = RetryPolicy(transient_retries=settings.max_retries, backoff_s=settings.retry_backoff_s)

    def classify(self, response: httpx.Response) -> MetricxError | None:
        """Meta signals errors in the body: an envelope on any status, or an unusable 200."""
        path = _relative_path(response)
        body = _json_body(response)
        error = GraphError.from_body(body)
        if error is None and response.status_code < 400:
            if not isinstance(body, dict):
                return TransientError(f"Meta API returned an empty or corrupt body for {path} (HTTP 200)")
            return None
        usage = parse_usage(response.headers)
        exc = map_graph_error(
            response.status_code,
            error,
            retry_after_s=usage.regain_s if usage else None,
            default_retry_s=self._settings.throttle_default_retry_s,
        )
        exc.message = redact(exc.message, self._token, *self._secrets)
        exc.args = (exc.message,)
        log.warning(
            "meta_request_failed",
            path=path,
            status=response.status_code,
            code=error.code if error else None,
            subcode=error.subcode if error else None,
            fbtrace_id=error.fbtrace_id if error else None,
            kind=exc.kind,
        )
        return exc

    def usage(self, response: httpx.Response) -> Usage | None:
        """The highest usage of the four usage headers; at ``usage_block_pct`` the account is blocked,
        or, when the app's own usage (``X-App-Usage``, ``app_id_util_pct``) is that high, the app."""
        usage = parse_usage(response.headers)
        if usage is None:
            return None
        pct = max(usage.account_pct, usage.app_pct)
        block_s, scope = None, "account"
        if pct >= self._settings.usage_block_pct:
            block_s = usage.regain_s or 60.0
            if usage.app_pct >= self._settings.usage_block_pct:
                scope = SCOPE_APP
            log.info("meta_usage_high", pct=pct, app_pct=usage.app_pct, regain_s=usage.regain_s, scope=scope)
        return Usage(pct=pct, regain_s=usage.regain_s, block_s=block_s, scope=scope)

    def retry_in_request(self, error: MetricxError) -> bool:
        # Asking again for the same amount of data fails again: pages() shrinks the request instead.
        # Code 1 at HTTP 500 may as well be Meta's generic transient: that one is retried first.
        return not isinstance(error, ReduceDataError) or not error.certain


class MetaClient:
    """One account's view of the Graph API, bound to a token and the core's ProviderHTTP."""

    def __init__(self, http: ProviderHTTP, settings: MetaSettings, access_token: str) -> None:
        self._http = http
        secret = settings.app_secret.get_secret_value() if settings.app_secret else None
        # appsecret_proof = HMAC-SHA256(key=app secret, message=access token), hex: Meta's
        # "Securing Graph API requests" (developers.facebook.com/docs/graph-api/security).
        self._proof = (
            hmac.new(secret.encode(), access_token.encode(), hashlib.sha256).hexdigest() if secret else None
        )
        self._api = MetaAPI(settings, access_token, *(s for s in (secret, self._proof) if s))
        self._settings = settings
        self._token = access_token
        self._root = f"{settings.base_url.rstrip('/')}/{settings.api_version}"

    @property
    def settings(self) -> MetaSettings:
        return self._settings

    def redact(self, text: str) -> str:
        return redact(text, self._token, self._proof)

    def scrub(self, exc: MetricxError) -> MetricxError:
        """Remove the token from an error raised while handling a response (records echo values)."""
        exc.message = self.redact(exc.message)
        exc.args = (exc.message,)
        return exc

    async def get(self, path: str, params: Params | None = None) -> JSONDict:
        """GET ``/{version}/{path}``; ProviderHTTP retries what may be retried in the request."""
        return await self._send("GET", path, params or {})

    async def post(self, path: str, params: Params | None = None) -> JSONDict:
        """POST ``/{version}/{path}`` with form parameters."""
        return await self._send("POST", path, params or {})

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

    async def _send(self, method: str, path: str, params: Params) -> JSONDict:
        response = await self._http.request(
            self._api,
            method,
            f"{self._root}/{path.lstrip('/')}",
            params={**params, "appsecret_proof": self._proof} if self._proof else dict(params),
            headers={"Authorization": f"Bearer {self._token}"},
            timeout_s=self._settings.request_timeout_s,
        )
        body = _json_body(response)
        if not isinstance(body, dict):  # MetaAPI.classify accepts nothing else; kept for -O runs
            raise TransientError(f"Meta API returned an empty or corrupt body for {path} (HTTP 200)")
        return body


def _relative_path(response: httpx.Response) -> str:
    # "/v25.0/act_1/insights" -> "act_1/insights": the path the client was asked for.
    return response.request.url.path.lstrip("/").partition("/")[2]


def _json_body(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return json.loads(response.content)
    except ValueError:
        return None
