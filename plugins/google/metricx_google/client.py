"""REST client for the Google Ads API: search (paged), searchStream (batches), accessible customers.

Every request waits for the shared :class:`~core.ratelimit.AccountLimiter`,
carries a cached access token, and retries exactly once with a fresh token
when Google answers ``authenticationError``. Failures become core errors via
:mod:`metricx_google.failures`; tokens never appear in their messages.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog

from core.errors import AuthError, ConfigError, RateLimited, TransientError
from core.providers import AccountRef, ProviderContext
from metricx_google.auth import RECONNECT, AccessTokens
from metricx_google.failures import Failure, parse_failure, to_error
from metricx_google.settings import GoogleSettings

log = structlog.get_logger(__name__)

Row = dict[str, Any]
_DIGITS = re.compile(r"^\d{1,20}$")


def customer_id_of(value: object, what: str = "customer id") -> str:
    """Google customer ids are digits; ``123-456-7890`` is accepted and normalised."""
    text = str(value).strip().replace("-", "")
    if not _DIGITS.match(text):
        raise ConfigError(f"Google Ads {what} must be digits like 1234567890, got {str(value)[:30]!r}")
    return text


class _BrokenStream(Exception):
    """A searchStream body that is truncated or not JSON."""


class GoogleAdsClient:
    """Google Ads REST calls for one account (``account.external_account_id``)."""

    def __init__(
        self, ctx: ProviderContext, settings: GoogleSettings, account: AccountRef, tokens: AccessTokens
    ) -> None:
        self._ctx = ctx
        self._settings = settings
        self._tokens = tokens
        self.customer_id = customer_id_of(account.external_account_id)
        login = account.config.get("login_customer_id") if account.config else None
        self.login_customer_id = customer_id_of(login, "login_customer_id") if login else None

    def _headers(self, token: str) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if self.login_customer_id:
            headers["login-customer-id"] = self.login_customer_id
        if self._settings.developer_token is not None:
            headers["developer-token"] = self._settings.developer_token.get_secret_value()
        return headers

    async def _request(self, method: str, path: str, body: dict[str, Any] | None, *, stream: bool) -> Any:
        """Send one call (refreshing the token once on an auth error) and return the parsed JSON."""
        url = f"{self._settings.api_root()}/{path}"
        token = await self._tokens.get()
        for attempt in (1, 2):
            await self._ctx.limiter.acquire()
            try:
                response = await self._ctx.http.request(
                    method,
                    url,
                    json=body,
                    headers=self._headers(token),
                    timeout=self._settings.request_timeout_s,
                )
            except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                if stream:
                    raise _BrokenStream(type(exc).__name__) from None
                raise TransientError(f"Google Ads connection broke ({type(exc).__name__})") from None
            except httpx.TransportError as exc:
                raise TransientError(f"Google Ads unreachable ({type(exc).__name__})") from None
            request_id = response.headers.get("request-id")
            payload = _decode(response, stream=stream)
            failure = _failure_in(response.status_code, payload, request_id)
            if failure is None:
                return payload
            if failure.is_authentication:
                log.warning("google_auth_rejected", customer_id=self.customer_id, attempt=attempt)
                if attempt == 1:
                    token = await self._tokens.refresh(stale=token)
                    continue
                raise AuthError(f"Google Ads rejected a freshly minted access token. {RECONNECT}")
            error = to_error(failure, self.customer_id, datetime.now(UTC))
            log.warning(
                "google_api_failed",
                customer_id=self.customer_id,
                http_status=response.status_code,
                error_kind=error.kind,
                request_id=request_id,
            )
            if isinstance(error, RateLimited):
                await self._ctx.limiter.block(error.retry_after_s, scope=error.scope)
            raise error
        raise AssertionError("unreachable")  # pragma: no cover

    async def search(self, query: str) -> AsyncIterator[list[Row]]:
        """Yield the rows of ``query`` page by page (10,000 rows per page, same query each time)."""
        path = f"customers/{self.customer_id}/googleAds:search"
        page_token: str | None = None
        while True:
            body: dict[str, Any] = {"query": query}
            if page_token:
                body["pageToken"] = page_token
            payload = await self._request("POST", path, body, stream=False)
            if not isinstance(payload, dict):
                raise TransientError("Google Ads search returned an unexpected body")
            yield _rows(payload.get("results"))
            page_token = payload.get("nextPageToken") or None
            if page_token is None:
                return

    async def search_stream(self, query: str) -> list[list[Row]]:
        """All batches of ``query`` via searchStream; a broken stream is re-run once."""
        path = f"customers/{self.customer_id}/googleAds:searchStream"
        for attempt in (1, 2):
            try:
                payload = await self._request("POST", path, {"query": query}, stream=True)
            except _BrokenStream as exc:
                log.warning("google_stream_broken", customer_id=self.customer_id, attempt=attempt)
                if attempt == 2:
                    raise TransientError(
                        f"Google Ads account {self.customer_id}: searchStream broke twice ({exc})"
                    ) from None
                continue
            return [_rows(batch.get("results")) for batch in payload if isinstance(batch, dict)]
        raise AssertionError("unreachable")  # pragma: no cover

    async def list_accessible_customers(self) -> list[str]:
        """Customer ids the OAuth user can reach directly (managers and standalone accounts)."""
        payload = await self._request("GET", "customers:listAccessibleCustomers", None, stream=False)
        names = payload.get("resourceNames") if isinstance(payload, dict) else None
        return [str(n).rsplit("/", 1)[-1] for n in names or []]


def _decode(response: httpx.Response, *, stream: bool) -> Any:
    try:
        payload = json.loads(response.content) if response.content else None
    except ValueError:
        payload = None
        if stream and response.status_code < 400:
            raise _BrokenStream("truncated or invalid JSON") from None
    if response.status_code < 400:
        if stream and not isinstance(payload, list):
            raise _BrokenStream("body is not a JSON array")
        if payload is None:
            raise TransientError(f"Google Ads returned an empty body (HTTP {response.status_code})")
    return payload


def _failure_in(status: int, payload: Any, request_id: str | None) -> Failure | None:
    if status >= 400:
        return parse_failure(status, payload, request_id)
    if isinstance(payload, list):
        # searchStream reports a mid-stream failure as an array element.
        for batch in payload:
            if isinstance(batch, dict) and "error" in batch:
                err = batch["error"]
                code = int(err.get("code") or 500) if isinstance(err, dict) else 500
                return parse_failure(code, batch, request_id)
    return None


def _rows(results: object) -> list[Row]:
    if results is None:
        return []
    if not isinstance(results, list):
        raise TransientError("Google Ads returned results that are not a list")
    return [r for r in results if isinstance(r, dict)]
