"""REST client for the Google Ads API over the core's ProviderHTTP: search (paged), searchStream, customers.

:class:`GoogleAdsAPI` tells :class:`core.ProviderHTTP` how to read Google: the GoogleAdsFailure
envelope becomes core errors via :mod:`metricx_google.failures`, an ``authenticationError`` makes
ProviderHTTP refresh the shared access token once and re-send (:class:`~metricx_google.auth.BearerAuth`),
and only a broken searchStream is retried in the request (once: a stream cannot be resumed).
Everything else is raised for the sync engine to retry or defer. Tokens never appear in messages.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import ijson  # type: ignore[import-untyped]
import structlog

from core import (
    AccountRef,
    AuthError,
    ConfigError,
    ConnectionLost,
    MetricxError,
    ProviderAPI,
    ProviderContext,
    RetryPolicy,
    TransientError,
)
from metricx_google.auth import RECONNECT, AccessTokens, BearerAuth
from metricx_google.failures import (
    Failure,
    account_auth_error,
    is_version_retired,
    parse_failure,
    to_error,
    version_retired,
)
from metricx_google.quota import OperationBudget
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


class BrokenStream(TransientError):
    """A searchStream body that is truncated or not JSON: the slice must be re-run."""


class GoogleAdsAPI(ProviderAPI):
    """How ProviderHTTP reads Google Ads answers for one customer (``stream``: searchStream calls)."""

    name = "Google Ads"

    def __init__(self, customer_id: str, *, stream: bool, version: str = "") -> None:
        self.customer_id = customer_id
        self.stream = stream
        self.version = version
        # Quotas and 5xx go to the engine (retry with backoff, or deferral); a broken stream is
        # re-run once here, since only the request knows the slice.
        self.policy = RetryPolicy(transient_retries=1 if stream else 0, backoff_s=0.0, throttle_retries=0)

    def classify(self, response: httpx.Response) -> MetricxError | None:
        try:
            payload = decode(response, stream=self.stream)
        except BrokenStream as exc:
            log.warning("google_stream_broken", customer_id=self.customer_id, reason=exc.message)
            return exc
        except TransientError as exc:
            return exc
        return self.error_for(response.status_code, payload, response.headers.get("request-id"))

    def error_for(self, status: int, payload: Any, request_id: str | None) -> MetricxError | None:
        """The core error of an answer's parsed body (or of an error element inside a stream)."""
        if status == 404 and not isinstance(payload, (dict, list)):
            # Long after a sunset Google answers the retired version's paths with a plain-text 404.
            log.warning("google_version_retired", customer_id=self.customer_id, version=self.version)
            return version_retired(self.version, "HTTP 404 Not Found")
        failure = _failure_in(status, payload, request_id)
        if failure is None:
            return None
        if is_version_retired(failure):
            log.warning("google_version_retired", customer_id=self.customer_id, version=self.version)
            return version_retired(self.version, failure.first_message().strip())
        account_auth = account_auth_error(failure, self.customer_id)
        if account_auth is not None:
            log.warning("google_account_rejected", customer_id=self.customer_id, request_id=request_id)
            return account_auth
        if failure.is_authentication:
            log.warning("google_auth_rejected", customer_id=self.customer_id)
            return AuthError(f"Google Ads rejected a freshly minted access token. {RECONNECT}")
        error = to_error(failure, self.customer_id, datetime.now(UTC))
        log.warning(
            "google_api_failed",
            customer_id=self.customer_id,
            http_status=status,
            error_kind=error.kind,
            request_id=request_id,
        )
        return error

    def retry_in_request(self, error: MetricxError) -> bool:
        return isinstance(error, (BrokenStream, ConnectionLost))


class GoogleAdsClient:
    """Google Ads REST calls for one account (``account.external_account_id``)."""

    def __init__(
        self,
        ctx: ProviderContext,
        settings: GoogleSettings,
        account: AccountRef,
        tokens: AccessTokens,
        budget: OperationBudget | None = None,
    ) -> None:
        self._ctx = ctx
        self._budget = budget
        self._settings = settings
        self._tokens = tokens
        self.customer_id = customer_id_of(account.external_account_id)
        login = account.config.get("login_customer_id") if account.config else None
        self.login_customer_id = customer_id_of(login, "login_customer_id") if login else None
        self._apis = {
            stream: GoogleAdsAPI(self.customer_id, stream=stream, version=settings.api_version)
            for stream in (False, True)
        }

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.login_customer_id:
            headers["login-customer-id"] = self.login_customer_id
        if self._settings.developer_token is not None:
            headers["developer-token"] = self._settings.developer_token.get_secret_value()
        return headers

    async def _request(self, method: str, path: str, body: dict[str, Any] | None, *, stream: bool) -> Any:
        """Send one call through ProviderHTTP and return the parsed JSON of the accepted answer."""
        if self._budget is not None:
            await self._budget.spend()  # one query = one operation of the developer token
        response = await self._ctx.http.request(
            self._apis[stream],
            method,
            f"{self._settings.api_root()}/{path}",
            json=body,
            headers=self._headers(),
            timeout_s=self._settings.request_timeout_s,
            auth=BearerAuth(self._tokens),
        )
        return decode(response, stream=stream)

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
        """All batches of ``query`` via searchStream (small answers: customer, hierarchy)."""
        return [batch async for batch in self.stream(query)]

    async def stream(self, query: str) -> AsyncIterator[list[Row]]:
        """The batches of ``query`` via searchStream, parsed incrementally: one list of rows per batch
        (at most 10,000 rows), so memory does not grow with the account. A stream that breaks before
        its first batch is re-run once; one that breaks later fails the slice (the job re-reads it)."""
        delivered = 0
        for attempt in (1, 2):
            try:
                async for batch in self._stream_once(query):
                    delivered += 1
                    yield batch
                    del batch
                return
            except (BrokenStream, ConnectionLost) as exc:
                log.warning("google_stream_broken", customer_id=self.customer_id, reason=exc.message)
                if delivered or attempt == 2:
                    what = f"after {delivered} batches" if delivered else "twice"
                    raise TransientError(
                        f"Google Ads account {self.customer_id}: searchStream broke {what} ({exc.message})"
                    ) from None

    async def _stream_once(self, query: str) -> AsyncIterator[list[Row]]:
        path = f"customers/{self.customer_id}/googleAds:searchStream"
        api = self._apis[True]
        if self._budget is not None:
            await self._budget.spend()
        async with self._ctx.http.stream(
            api,
            "POST",
            f"{self._settings.api_root()}/{path}",
            json={"query": query},
            headers=self._headers(),
            timeout_s=self._settings.request_timeout_s,
            auth=BearerAuth(self._tokens),
        ) as response:
            request_id = response.headers.get("request-id")
            reader = _ChunkReader(response.aiter_bytes())
            try:
                async for batch in ijson.items_async(reader, "item"):
                    if not isinstance(batch, dict):
                        raise BrokenStream("a batch is not a JSON object")
                    if "error" in batch:
                        err = batch["error"]
                        code = int(err.get("code") or 500) if isinstance(err, dict) else 500
                        error = api.error_for(code, [batch], request_id)
                        raise error or TransientError("Google Ads searchStream reported an error")
                    rows = _rows(batch.get("results"))
                    del batch  # parse the next batch with this one released: one batch in memory
                    yield rows
                    del rows
            except ijson.JSONError as exc:
                raise BrokenStream(f"truncated or invalid JSON: {str(exc)[:80]}") from None
            except httpx.RequestError as exc:
                raise ConnectionLost(
                    f"Google Ads searchStream connection broke: {type(exc).__name__}"
                ) from None
            if not reader.started:
                raise BrokenStream("empty body")
            if reader.first != b"[":
                raise BrokenStream("body is not a JSON array")

    async def list_accessible_customers(self) -> list[str]:
        """Customer ids the OAuth user can reach directly (managers and standalone accounts)."""
        payload = await self._request("GET", "customers:listAccessibleCustomers", None, stream=False)
        names = payload.get("resourceNames") if isinstance(payload, dict) else None
        return [str(n).rsplit("/", 1)[-1] for n in names or []]


class _ChunkReader:
    """An async file-like view of a response's byte chunks, for ijson's incremental parser."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self.started = False
        self.first = b""

    async def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                break
            if chunk and not self.started:
                self.started, self.first = True, chunk.lstrip()[:1]
            self._buffer += chunk
        if size < 0:
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


_PARSED = "metricx_google.json"


def decode(response: httpx.Response, *, stream: bool) -> Any:
    """The JSON of an answer; BrokenStream / TransientError when a successful answer is unusable.

    Parsed once per response: classify and the client read the same (possibly large) body.
    """
    if _PARSED in response.extensions:
        return response.extensions[_PARSED]
    payload = _parse(response, stream=stream)
    response.extensions[_PARSED] = payload
    return payload


def _parse(response: httpx.Response, *, stream: bool) -> Any:
    try:
        payload = json.loads(response.content) if response.content else None
    except ValueError:
        payload = None
        if stream and response.status_code < 400:
            raise BrokenStream("truncated or invalid JSON") from None
    if response.status_code < 400:
        if stream and not isinstance(payload, list):
            raise BrokenStream("body is not a JSON array")
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
