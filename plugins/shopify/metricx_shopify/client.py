"""Client of the Shopify GraphQL Admin API over the core's ProviderHTTP: auth, cursor pages, cost throttling.

Every call is ``POST {root}/admin/api/{version}/graphql.json``. :class:`ShopifyAPI` tells
:class:`core.ProviderHTTP` how to read the answers:

- **cost throttling** (https://shopify.dev/docs/api/usage/limits): every answer carries
  ``extensions.cost`` with ``throttleStatus { maximumAvailable currentlyAvailable restoreRate }``.
  The bucket's fill is reported to the shared limiter as usage (slow down from 70 %, pause at 95 %
  until it is half full again) and its restore rate, divided by the cost of the last query, is the
  steady request rate every worker syncing the shop paces at. ``THROTTLED`` arrives *inside an HTTP
  200* (``errors[].extensions.code``): a RateLimited for the time the bucket needs to hold the
  requested cost, waited out in the request up to ``max_throttle_wait_s``, else the sync is deferred;
- ``MAX_COST_EXCEEDED`` (a single query above 1000 points) is :class:`MaxCostExceeded`: the client
  shrinks the page (``first``) by the ratio the error names and asks again;
- an unknown field or another validation error is a ConfigError (the query is wrong for the
  version served), a refused cursor :class:`InvalidPageInfo`, 401 an AuthError, 5xx transient.

Nodes are normalised into the REST/webhook shape that :mod:`metricx_shopify.mapping` reads (numeric
ids from ``legacyResourceId``, money from ``shopMoney`` of the ``*Set`` fields, lower-case statuses),
so one mapping serves the sync and the webhooks. Nested fields are read whole: an order with more
line items than the inline page reads the rest with ``order(id:) { lineItems(after:) }``; a full
inline ``refunds`` list (a list, truncated by ``first``, no cursor) is read again whole with
``order(id:) { refunds }``; a refund with more transactions than its inline page reads the rest
with ``refund(id:) { transactions(after:) }``. Bulk operations: :mod:`metricx_shopify.bulk`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

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
)
from metricx_shopify import queries
from metricx_shopify.auth import ShopifyAuth
from metricx_shopify.bulk import run_bulk_query
from metricx_shopify.settings import ShopifySettings

log = structlog.get_logger(__name__)

SHOP_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$")
TOKEN_HEADER = "X-Shopify-Access-Token"
VERSION_HEADER = "X-Shopify-API-Version"


class InvalidPageInfo(PermanentError):
    """Shopify refused a pagination cursor (expired, or from another sort)."""


class MaxCostExceeded(PermanentError):
    """One query asked for more than the single-query maximum cost; ``ratio`` = max / requested."""

    def __init__(self, message: str, ratio: float) -> None:
        super().__init__(message)
        self.ratio = ratio


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a connection: its rows (REST-shaped) and the cursor after it (None on the last page)."""

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


def shop_facts(data: Mapping[str, Any]) -> dict[str, Any]:
    """The ``data`` of the :data:`~metricx_shopify.queries.SHOP` query as the plugin reads it: the
    numeric ``id``, ``name``, ``iana_timezone``, ``currency`` and ``myshopify_domain`` (lowercase)."""
    shop = data.get("shop")
    if not isinstance(shop, dict) or not shop.get("ianaTimezone") or not shop.get("currencyCode"):
        raise PayloadError("the shop query has no ianaTimezone / currencyCode")
    return {
        "id": queries.legacy_id(shop.get("id")),
        "name": shop.get("name"),
        "iana_timezone": shop["ianaTimezone"],
        "currency": shop["currencyCode"],
        "myshopify_domain": str(shop.get("myshopifyDomain") or "").lower() or None,
    }


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error_text(response: httpx.Response) -> str:
    body = _body(response)
    if body is None:
        return response.text[:200]
    errors = body.get("errors", body) if isinstance(body, dict) else body
    return str(errors)[:300]


def _cost(body: Any) -> Mapping[str, Any]:
    cost = body.get("extensions", {}).get("cost") if isinstance(body, dict) else None
    return cost if isinstance(cost, dict) else {}


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


class ShopifyAPI(ProviderAPI):
    """How ProviderHTTP reads the GraphQL Admin API of one shop."""

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
        """The cost bucket from ``extensions.cost.throttleStatus``: fill, regain time and steady rate."""
        cost = _cost(_body(response))
        status = cost.get("throttleStatus")
        if not isinstance(status, dict):
            return None
        maximum = max(1.0, _number(status.get("maximumAvailable"), 1000.0))
        available = _number(status.get("currentlyAvailable"), maximum)
        restore = max(0.1, _number(status.get("restoreRate"), 50.0))
        # A query runs only when the bucket holds its *requested* cost: that is what paces.
        query_cost = max(
            1.0, _number(cost.get("requestedQueryCost"), _number(cost.get("actualQueryCost"), 1.0))
        )
        return Usage(
            pct=100.0 * (1 - available / maximum),
            regain_s=max(0.0, maximum / 2 - available) / restore,
            # the bucket refills `restore` points a second: that many queries of this cost
            rate_per_s=restore / query_cost,
            burst=max(1, int(maximum * self._settings.burst_pct / 100 / query_cost)),
        )

    def classify(self, response: httpx.Response) -> MetricxError | None:
        status = response.status_code
        if status == 200:
            return self._graphql_errors(response)
        text = _error_text(response)
        if status == 429:  # REST-style throttle (GraphQL throttles inside a 200, below)
            return RateLimited(f"Shopify throttled the shop {self.shop}: {text}", 2.0)
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
            return ConfigError(f"Shopify has no such shop ({self.shop}, 404)")
        if status == 423:
            return PermanentError(f"The shop {self.shop} is locked (423): {text}")
        return ConfigError(f"Shopify answered {status}: {text}")

    def _graphql_errors(self, response: httpx.Response) -> MetricxError | None:
        body = _body(response)
        if not isinstance(body, dict):
            return PayloadError(
                f"Shopify answered with a body that is not a JSON object: {response.text[:80]!r}"
            )
        errors = body.get("errors")
        if not errors:
            return None
        first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
        code = str((first.get("extensions") or {}).get("code") or "")
        message = str(first.get("message") or errors)[:300]
        if code == "THROTTLED":
            cost = _cost(body)
            status = cost.get("throttleStatus") or {}
            need = _number(cost.get("requestedQueryCost"), 1.0) - _number(
                status.get("currentlyAvailable"), 0.0
            )
            wait = max(0.5, need / max(0.1, _number(status.get("restoreRate"), 50.0)))
            log.info("shopify_throttled", shop=self.shop, retry_after_s=round(wait, 2))
            return RateLimited(f"Shopify throttled the shop {self.shop} (query cost bucket empty)", wait)
        if code == "MAX_COST_EXCEEDED":
            ext = first.get("extensions") or {}
            ratio = _number(ext.get("maxCost"), 1000.0) / max(1.0, _number(ext.get("cost"), 2000.0))
            return MaxCostExceeded(f"Shopify refused a query above its cost limit: {message[:120]}", ratio)
        if code in ("INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE"):
            return TransientError(f"Shopify failed the query ({code}): {message}")
        if code == "ACCESS_DENIED":
            return ConfigError(f"The app lacks an access scope on {self.shop}: {message}; re-install it")
        if "cursor" in message.lower():
            return InvalidPageInfo(f"Shopify refused the page cursor: {message}")
        return ConfigError(f"Shopify refused the query ({code or 'invalid'}): {message}")


class ShopifyClient:
    """Talks to one shop for one sync; cheap to create.

    ``auth`` (:class:`~metricx_shopify.auth.ShopifyAuth`, a :class:`core.RequestAuth`) supplies the
    token header and refreshes an expiring token
    when Shopify rejects it; without it the credentials' access token is sent as it is.
    """

    def __init__(
        self,
        ctx: ProviderContext,
        account: AccountRef,
        credentials: Credentials,
        settings: ShopifySettings,
        auth: ShopifyAuth | None = None,
    ) -> None:
        if not (credentials.access_token or credentials.refresh_token) and auth is None:
            raise AuthError("No Shopify access token configured. Please reconnect the store.")
        self._http = ctx.http
        self.http = ctx.http
        self._token = credentials.access_token
        self._auth = auth
        self.auth = auth
        self.settings = settings
        self.shop = shop_domain(account)
        self._api = ShopifyAPI(settings, self.shop)
        root = (settings.base_url or f"https://{self.shop}").rstrip("/")
        self.endpoint = f"{root}/admin/api/{settings.api_version}/graphql.json"
        self.page_size = settings.page_size
        #: The version the server answered with (``X-Shopify-API-Version``): may differ from the one asked.
        self.served_version: str | None = None
        #: ``extensions.cost`` of the last answer (requested cost and the bucket's state).
        self.last_cost: Mapping[str, Any] = {}

    async def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One query through ProviderHTTP (paced, throttles and 5xx handled); its ``data``."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._auth is None:
            headers[TOKEN_HEADER] = self._token or ""
        response = await self._http.post(
            self._api,
            self.endpoint,
            json={"query": query, "variables": dict(variables or {})},
            headers=headers,
            timeout_s=self.settings.request_timeout_s,
            auth=self._auth,
        )
        served = response.headers.get(VERSION_HEADER)
        if served and served != self.served_version:
            if served != self.settings.api_version:
                log.warning("shopify_version_served", asked=self.settings.api_version, served=served)
            self.served_version = served
        body = _body(response)
        self.last_cost = _cost(body)
        data = body.get("data")
        if not isinstance(data, dict):
            raise PayloadError("Shopify answered a query without data")
        return data

    # --- resources ----------------------------------------------------------------------

    async def fetch_shop(self) -> dict[str, Any]:
        """The shop's name, ``iana_timezone``, currency and ``myshopify_domain`` (also checks the token)."""
        return shop_facts(await self.graphql(queries.SHOP))

    async def access_scopes(self) -> set[str]:
        """The scopes granted to the app on this shop (``currentAppInstallation.accessScopes``)."""
        data = await self.graphql(queries.ACCESS_SCOPES)
        scopes = (data.get("currentAppInstallation") or {}).get("accessScopes") or []
        return {str(s.get("handle")) for s in scopes if isinstance(s, dict)}

    async def list_page(self, resource: str, search: str | None, after: str | None, sort: str) -> Page:
        """One page of ``resource`` matching ``search`` after the cursor ``after``.

        A page Shopify finds too expensive is asked again smaller (the smaller size is kept).
        """
        while True:
            variables = {"first": self.page_size, "after": after, "query": search, "sortKey": sort}
            try:
                data = await self.graphql(queries.LIST[resource], variables)
            except MaxCostExceeded as exc:
                smaller = max(1, min(self.page_size - 1, int(self.page_size * exc.ratio)))
                if self.page_size == 1:
                    raise
                log.info("shopify_page_shrunk", resource=resource, first=self.page_size, to=smaller)
                self.page_size = smaller
                continue
            break
        self._fit_page(resource)
        field = "orders" if resource == "order_metrics" else resource
        connection = data.get(field)
        if not isinstance(connection, dict) or not isinstance(connection.get("nodes"), list):
            raise PayloadError(f"the {field} query has no {field}.nodes list")
        rows = []
        for node in connection["nodes"]:
            if field == "orders" and isinstance(node, dict):
                await self._complete_line_items(node)
                await self._complete_refunds(node)
            rows.append(queries.TO_REST[resource](node))
        info = connection.get("pageInfo") or {}
        return Page(rows=rows, next_page_info=info.get("endCursor") if info.get("hasNextPage") else None)

    def _fit_page(self, resource: str) -> None:
        """Keep a page's requested cost within ``burst_pct`` of the bucket, so pages pace smoothly."""
        requested = _number(self.last_cost.get("requestedQueryCost"), 0.0)
        status = self.last_cost.get("throttleStatus") or {}
        budget = _number(status.get("maximumAvailable"), 0.0) * self.settings.burst_pct / 100
        if requested > budget > 0 and self.page_size > 1:
            smaller = max(1, int(self.page_size * budget / requested))
            log.info("shopify_page_fitted", resource=resource, first=self.page_size, to=smaller)
            self.page_size = smaller

    async def _complete_line_items(self, order: dict[str, Any]) -> None:
        """Read the rest of an order's line items when they exceed the inline page."""
        lines = order.get("lineItems")
        if not isinstance(lines, dict):
            return
        info = lines.get("pageInfo") or {}
        while info.get("hasNextPage"):
            data = await self.graphql(
                queries.ORDER_LINE_ITEMS, {"id": order.get("id"), "after": info.get("endCursor")}
            )
            more = ((data.get("order") or {}).get("lineItems")) or {}
            lines["nodes"] = [*lines.get("nodes", []), *(more.get("nodes") or [])]
            info = more.get("pageInfo") or {}
        lines["pageInfo"] = {"hasNextPage": False, "endCursor": None}

    async def _complete_refunds(self, order: dict[str, Any]) -> None:
        """Read every refund of an order, and every transaction of each refund, past the inline pages."""
        refunds = order.get("refunds")
        if isinstance(refunds, list) and len(refunds) >= queries.INLINE_REFUNDS:
            data = await self.graphql(queries.ORDER_REFUNDS, {"id": order.get("id")})
            whole = (data.get("order") or {}).get("refunds")
            if isinstance(whole, list):
                order["refunds"] = refunds = whole
        for refund in refunds if isinstance(refunds, list) else []:
            txs = refund.get("transactions") if isinstance(refund, dict) else None
            if not isinstance(txs, dict):
                continue
            info = txs.get("pageInfo") or {}
            while info.get("hasNextPage"):
                data = await self.graphql(
                    queries.REFUND_TRANSACTIONS, {"id": refund.get("id"), "after": info.get("endCursor")}
                )
                more = ((data.get("refund") or {}).get("transactions")) or {}
                txs["nodes"] = [*txs.get("nodes", []), *(more.get("nodes") or [])]
                info = more.get("pageInfo") or {}
            txs["pageInfo"] = {"hasNextPage": False, "endCursor": None}

    async def bulk(self, resource: str, search: str) -> AsyncIterator[dict[str, Any]]:
        """Every ``resource`` (``orders`` / ``order_metrics``) matching ``search``, REST-shaped, read by
        one bulk operation and streamed one order at a time."""
        async for node in run_bulk_query(self, queries.bulk_orders(resource, search)):
            yield queries.TO_REST[resource](node)

    async def ids(self, resource: str, search: str | None) -> set[int]:
        """The numeric ids of every ``resource`` matching ``search`` that exists now."""
        found: set[int] = set()
        after: str | None = None
        while True:
            data = await self.graphql(queries.IDS[resource], {"first": 250, "after": after, "query": search})
            connection = data.get(resource)
            if not isinstance(connection, dict) or not isinstance(connection.get("nodes"), list):
                raise PayloadError(f"the {resource} id query has no {resource}.nodes list")
            for node in connection["nodes"]:
                value = node.get("legacyResourceId") if isinstance(node, dict) else None
                if not (isinstance(value, str) and value.isdigit()):
                    raise PayloadError(f"a {resource} node has no numeric legacyResourceId")
                found.add(int(value))
            info = connection.get("pageInfo") or {}
            if not info.get("hasNextPage"):
                return found
            after = info.get("endCursor")

    async def iterate(
        self, resource: str, search: str | None, *, page_info: str | None = None, sort: str = "UPDATED_AT"
    ) -> AsyncIterator[Page]:
        """Every page of ``resource`` matching ``search`` (Shopify's search syntax), from ``page_info``."""
        cursor = page_info
        while True:
            page = await self.list_page(resource, search, cursor, sort)
            yield page
            if page.next_page_info is None:
                return
            cursor = page.next_page_info
