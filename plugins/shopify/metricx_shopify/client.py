"""Client of the Shopify Admin REST API over the core's ProviderHTTP: auth, Link pagination, pacing, errors.

:class:`ShopifyAPI` tells :class:`core.ProviderHTTP` how to read Shopify. Pacing comes from
``X-Shopify-Shop-Api-Call-Limit`` (``used/capacity``) and lives in the shared limiter, so every
worker syncing the shop paces together: the bucket's drain rate (``capacity / 20`` per second on
every plan, or ``drain_per_s``) becomes the limiter's steady rate with a burst of ``burst_pct`` of
the bucket, and the bucket's fill is reported as usage (the limiter slows down from 70% and stops
at 95% until the bucket has drained to half). A 429 still honours ``Retry-After``: waited out in
the request up to ``max_throttle_wait_s`` (``max_throttle_retries`` times), else the sync is deferred.
"""

from __future__ import annotations

import re
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
    MetricxError,
    PayloadError,
    PermanentError,
    ProviderAPI,
    ProviderContext,
    RateLimited,
    RetryPolicy,
    TransientError,
    Usage,
    parse_retry_after,
)
from metricx_shopify.settings import ShopifySettings

log = structlog.get_logger(__name__)

SHOP_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$")
TOKEN_HEADER = "X-Shopify-Access-Token"
CALL_LIMIT_HEADER = "X-Shopify-Shop-Api-Call-Limit"


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


class ShopifyAPI(ProviderAPI):
    """How ProviderHTTP reads the Admin REST API of one shop."""

    name = "Shopify"

    def __init__(self, settings: ShopifySettings, shop: str) -> None:
        self._settings = settings
        self.shop = shop
        self.policy = RetryPolicy(
            transient_retries=settings.max_retries,
            backoff_s=settings.retry_backoff_s,
            throttle_retries=settings.max_throttle_retries,
            max_wait_s=settings.max_throttle_wait_s,
        )

    def usage(self, response: httpx.Response) -> Usage | None:
        """The leaky bucket from the call-limit header: steady rate, burst and fill for the limiter."""
        header = response.headers.get(CALL_LIMIT_HEADER)
        used_text, _, capacity_text = (header or "").partition("/")
        try:
            used, capacity = float(used_text), max(1.0, float(capacity_text))
        except ValueError:
            if header:
                log.warning("shopify_call_limit_unreadable", header=header[:40])
            return None
        # The bucket drains capacity/20 per second on every plan (40 -> 2/s, 80 -> 4/s, 400 -> 20/s).
        drain_per_s = self._settings.drain_per_s or capacity / 20
        return Usage(
            pct=100.0 * used / capacity,
            regain_s=max(0.0, used - capacity / 2) / drain_per_s,
            rate_per_s=drain_per_s,
            burst=max(1, int(capacity * self._settings.burst_pct / 100)),
        )

    def classify(self, response: httpx.Response) -> MetricxError | None:
        status = response.status_code
        if status == 200:
            return None
        text = _error_text(response)
        if status == 429:
            retry_after = parse_retry_after(response, 2.0)
            log.info("shopify_throttled", shop=self.shop, retry_after_s=retry_after)
            return RateLimited(f"Shopify throttled the shop {self.shop}: {text}", retry_after)
        if status >= 500:
            return TransientError(f"Shopify answered {status}: {text}")
        if status == 401:
            return AuthError(
                f"Shopify rejected the access token of {self.shop} (401). Please reconnect the store."
            )
        if status == 402:
            return PermanentError(f"The shop {self.shop} is frozen (402 Payment Required): {text}")
        if status == 403:
            return ConfigError(f"The app lacks an access scope on {self.shop} (403): {text}; re-install it")
        if status == 404:
            return ConfigError(f"Shopify has no such shop or resource ({self.shop}, 404)")
        if status == 423:
            return PermanentError(f"The shop {self.shop} is locked (423): {text}")
        if status == 400 and "page_info" in response.request.url.params:
            return InvalidPageInfo(f"Shopify refused the page cursor (400): {text}")
        return ConfigError(f"Shopify answered {status}: {text}")


class ShopifyClient:
    """Talks to one shop for one sync; cheap to create."""

    def __init__(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials, settings: ShopifySettings
    ) -> None:
        if not credentials.access_token:
            raise AuthError("No Shopify access token configured. Please reconnect the store.")
        self._http = ctx.http
        self._token = credentials.access_token
        self.settings = settings
        self.shop = shop_domain(account)
        self._api = ShopifyAPI(settings, self.shop)
        root = (settings.base_url or f"https://{self.shop}").rstrip("/")
        self.api_root = f"{root}/admin/api/{settings.api_version}"

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> httpx.Response:
        """GET ``{api_root}/{path}`` through ProviderHTTP (paced, 429 and 5xx handled); the 200 answer."""
        return await self._http.get(
            self._api,
            f"{self.api_root}/{path}",
            params=dict(params or {}),
            headers={TOKEN_HEADER: self._token, "Accept": "application/json"},
            timeout_s=self.settings.request_timeout_s,
        )

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
