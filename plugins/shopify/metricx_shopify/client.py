"""httpx client of the Shopify Admin REST API: auth, Link pagination, leaky-bucket pacing, errors.

Pacing reads ``X-Shopify-Shop-Api-Call-Limit`` (``used/capacity``) and sleeps
before the next request when the bucket is filling (thresholds in
:class:`~metricx_shopify.settings.ShopifySettings`), so a sync does not run
into 429s of its own making. A 429 still honours ``Retry-After``; the wait is
shared with every worker through the core's :class:`~core.ratelimit.AccountLimiter`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import structlog

from core import (
    AccountRef,
    AuthError,
    ConfigError,
    Credentials,
    PayloadError,
    PermanentError,
    ProviderContext,
    RateLimited,
    TransientError,
)
from metricx_shopify.settings import ShopifySettings

log = structlog.get_logger(__name__)

SHOP_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$")
TOKEN_HEADER = "X-Shopify-Access-Token"
CALL_LIMIT_HEADER = "X-Shopify-Shop-Api-Call-Limit"

# The last bucket level seen per shop, so a new client (one per provider call) starts paced.
_last_level: dict[str, tuple[float, float, float]] = {}


class InvalidPageInfo(PermanentError):
    """Shopify refused a ``page_info`` cursor (expired, or sent with filters)."""


@dataclass(frozen=True, slots=True)
class Page:
    """One list response: its rows and the cursor of the next page (None on the last page)."""

    rows: list[dict[str, Any]]
    next_page_info: str | None


def shop_domain(account: AccountRef) -> str:
    """The shop's ``*.myshopify.com`` domain: config ``shop_domain``, else the account id."""
    domain = str(account.config.get("shop_domain") or account.external_account_id).strip().lower()
    if not SHOP_DOMAIN.match(domain):
        raise ConfigError(
            f"shop domain {domain[:80]!r} is not a *.myshopify.com domain; "
            "set the connection's shop_domain (e.g. my-store.myshopify.com)"
        )
    return domain


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    errors = body.get("errors", body) if isinstance(body, dict) else body
    return str(errors)[:300]


def _retry_after(response: httpx.Response, default: float = 2.0) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", default)))
    except ValueError:
        return default


class ShopifyClient:
    """Talks to one shop for one sync; cheap to create."""

    def __init__(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials, settings: ShopifySettings
    ) -> None:
        if not credentials.access_token:
            raise AuthError("No Shopify access token configured. Please reconnect the store.")
        self._http = ctx.http
        self._limiter = ctx.limiter
        self._token = credentials.access_token
        self.settings = settings
        self.shop = shop_domain(account)
        root = (settings.base_url or f"https://{self.shop}").rstrip("/")
        self.api_root = f"{root}/admin/api/{settings.api_version}"

    # --- pacing -------------------------------------------------------------------------

    def _fill_pct(self) -> float:
        seen = _last_level.get(self.shop)
        if seen is None:
            return 0.0
        used, capacity, at = seen
        # The bucket drains capacity/20 per second on every plan (40 -> 2/s, 80 -> 4/s, 400 -> 20/s).
        level = max(0.0, used - capacity / 20 * (time.monotonic() - at))
        return 100.0 * level / capacity

    def _pace_s(self) -> float:
        pct, s = self._fill_pct(), self.settings
        if pct >= s.pace_high_pct:
            return s.pace_high_s
        if pct >= s.pace_mid_pct:
            return s.pace_mid_s
        if pct >= s.pace_low_pct:
            return s.pace_low_s
        return 0.0

    def _record_limit(self, response: httpx.Response) -> None:
        header = response.headers.get(CALL_LIMIT_HEADER)
        if not header or "/" not in header:
            return
        used, _, capacity = header.partition("/")
        try:
            _last_level[self.shop] = (float(used), max(1.0, float(capacity)), time.monotonic())
        except ValueError:
            log.warning("shopify_call_limit_unreadable", header=header[:40])

    async def _pace(self) -> None:
        await self._limiter.acquire()
        wait = self._pace_s()
        if wait > 0:
            self._limiter.throttled_s += wait
            await asyncio.sleep(wait)

    # --- requests -----------------------------------------------------------------------

    async def _send(self, url: str, params: Mapping[str, Any]) -> httpx.Response:
        try:
            return await self._http.get(
                url,
                params=dict(params),
                headers={TOKEN_HEADER: self._token, "Accept": "application/json"},
                timeout=self.settings.request_timeout_s,
            )
        except httpx.TimeoutException as exc:
            raise TransientError(
                f"Shopify did not answer within {self.settings.request_timeout_s:g}s"
            ) from exc
        except httpx.TransportError as exc:
            raise TransientError(f"Shopify unreachable: {type(exc).__name__}") from exc

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> httpx.Response:
        """GET ``{api_root}/{path}``, paced, with 429 and 5xx handling; returns the 200 response."""
        url = f"{self.api_root}/{path}"
        throttles = transient = 0
        while True:
            await self._pace()
            try:
                response = await self._send(url, params or {})
            except TransientError:
                if transient >= self.settings.max_retries:
                    raise
                transient += 1
                await asyncio.sleep(self.settings.retry_backoff_s * 2 ** (transient - 1))
                continue
            self._record_limit(response)
            if response.status_code == 429:
                retry_after = _retry_after(response)
                if (
                    throttles >= self.settings.max_throttle_retries
                    or retry_after > self.settings.max_throttle_wait_s
                ):
                    raise RateLimited(
                        f"Shopify throttled the shop {self.shop}: {_error_text(response)}", retry_after
                    )
                throttles += 1
                log.info("shopify_throttled", shop=self.shop, retry_after_s=retry_after, attempt=throttles)
                await self._limiter.block(retry_after)
                continue
            if response.status_code >= 500:
                if transient >= self.settings.max_retries:
                    raise TransientError(f"Shopify answered {response.status_code}: {_error_text(response)}")
                transient += 1
                await asyncio.sleep(self.settings.retry_backoff_s * 2 ** (transient - 1))
                continue
            if response.status_code != 200:
                self._raise_for(response, params or {})
            return response

    def _raise_for(self, response: httpx.Response, params: Mapping[str, Any]) -> None:
        status, text = response.status_code, _error_text(response)
        if status == 401:
            raise AuthError(
                f"Shopify rejected the access token of {self.shop} (401). Please reconnect the store."
            )
        if status == 402:
            raise PermanentError(f"The shop {self.shop} is frozen (402 Payment Required): {text}")
        if status == 403:
            raise ConfigError(f"The app lacks an access scope on {self.shop} (403): {text}; re-install it")
        if status == 404:
            raise ConfigError(f"Shopify has no such shop or resource ({self.shop}, 404)")
        if status == 423:
            raise PermanentError(f"The shop {self.shop} is locked (423): {text}")
        if status == 400 and "page_info" in params:
            raise InvalidPageInfo(f"Shopify refused the page cursor (400): {text}")
        raise ConfigError(f"Shopify answered {status}: {text}")

    # --- resources ----------------------------------------------------------------------

    async def fetch_shop(self) -> dict[str, Any]:
        """``shop.json``: the shop's name, ``iana_timezone`` and currency (also checks the token)."""
        body = _json(await self.get("shop.json"))
        shop = body.get("shop")
        if not isinstance(shop, dict) or not shop.get("iana_timezone") or not shop.get("currency"):
            raise PayloadError("shop.json has no shop.iana_timezone / shop.currency")
        return shop

    async def list_page(self, resource: str, params: Mapping[str, Any]) -> Page:
        """One page of ``{resource}.json`` (the rows under the resource's key) and the next cursor."""
        response = await self.get(f"{resource}.json", params)
        rows = _json(response).get(resource)
        if not isinstance(rows, list):
            raise PayloadError(f"{resource}.json has no {resource!r} list")
        nxt = response.links.get("next", {}).get("url")
        page_info = parse_qs(urlparse(nxt).query).get("page_info", [None])[0] if nxt else None
        return Page(rows=rows, next_page_info=page_info)

    async def iterate(
        self, resource: str, filters: Mapping[str, Any], *, page_info: str | None = None
    ) -> AsyncIterator[Page]:
        """Every page of ``resource`` matching ``filters``; resumes at ``page_info`` when given.

        With a cursor only ``limit`` (and ``fields``) may be sent, as Shopify requires.
        """
        cursor = page_info
        while True:
            params: dict[str, Any] = {"limit": self.settings.page_size}
            if "fields" in filters:
                params["fields"] = filters["fields"]
            if cursor is None:
                params.update(filters)
            else:
                params["page_info"] = cursor
            page = await self.list_page(resource, params)
            yield page
            if page.next_page_info is None:
                return
            cursor = page.next_page_info


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise PayloadError(f"Shopify answered with a body that is not JSON: {response.text[:80]!r}") from None
    if not isinstance(body, dict):
        raise PayloadError("Shopify answered with JSON that is not an object")
    return body
