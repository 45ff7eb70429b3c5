"""Connecting a Shopify store through the authorization code grant (an expiring offline token).

``https://{shop}/admin/oauth/authorize?client_id&scope&redirect_uri&state`` (the shop domain
validated first) -> the callback's ``hmac`` checked with the app's secret and its ``shop`` matched
to the one asked -> ``POST https://{shop}/admin/oauth/access_token`` with ``expiring=1`` (a 60-minute
token and a rotating refresh token, see auth.py) -> the scopes granted checked -> the GraphQL Admin
API's ``shop`` query (``POST /admin/api/{version}/graphql.json``: name, currencyCode, ianaTimezone,
myshopifyDomain; the query and its reading are the provider's token check's, client.py), whose
``myshopifyDomain`` must be the shop asked. One token reaches one shop: each store is its own flow.
Shapes: fixtures/oauth_*.json, fixtures/graphql_shop.json.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx

from core import (
    AuthorizationRequest,
    ConnectError,
    Credentials,
    DiscoveredAccount,
    MetricxError,
    RateLimited,
    TransientError,
    app_credentials,
    granted,
    platform_request,
)
from metricx_shopify import queries
from metricx_shopify.client import SHOP_DOMAIN, TOKEN_HEADER, ShopifyAPI, shop_facts
from metricx_shopify.settings import ShopifySettings, get_shopify_settings

#: What the store sync reads; read_all_orders (older than 60 days) is asked for, not required.
NEEDED_SCOPES = ("read_orders", "read_products", "read_customers")
REQUESTED_SCOPES = (*NEEDED_SCOPES, "read_all_orders")
CALLBACK_MAX_AGE_S = 24 * 3600


def shop_param(raw: str | None) -> str:
    """The shop domain as Shopify names it (lowercase ``name.myshopify.com``), else invalid_request."""
    value = (raw or "").strip().lower().removeprefix("https://").removeprefix("http://").rstrip("/")
    if not SHOP_DOMAIN.match(value):
        raise ConnectError(
            f"shop {value[:80]!r} is not a *.myshopify.com domain (e.g. my-store.myshopify.com)",
            code="invalid_request",
            status=422,
        )
    return value


class ShopifyConnector:
    """The Shopify side of the core's connect flow."""

    provider = "shopify"
    uses_pkce = False  # Shopify's authorization code grant has no PKCE; the callback carries an HMAC

    def __init__(self, settings: ShopifySettings | None = None) -> None:
        self._settings = settings

    @property
    def settings(self) -> ShopifySettings:
        return self._settings or get_shopify_settings()

    def _app(self) -> tuple[str, str]:
        s = self.settings
        return app_credentials(
            "the Shopify app",
            s.client_id,
            s.client_secret,
            ("METRICX_SHOPIFY_CLIENT_ID", "METRICX_SHOPIFY_CLIENT_SECRET"),
        )

    def _root(self, shop: str) -> str:
        return (self.settings.base_url or f"https://{shop}").rstrip("/")

    def start_params(self, params: Mapping[str, str]) -> dict[str, str]:
        self._app()
        return {"shop": shop_param(params.get("shop"))}

    def authorization_url(self, request: AuthorizationRequest) -> str:
        client_id, _ = self._app()
        shop = request.params["shop"]
        query = {
            "client_id": client_id,
            "scope": ",".join(REQUESTED_SCOPES),
            "redirect_uri": request.redirect_uri,
            "state": request.state,
        }
        if self.settings.base_url:
            query["shop"] = shop  # a simulator serves every shop on one host
        return f"{self._root(shop)}/admin/oauth/authorize?{urlencode(query)}"

    def check_callback(self, query: Mapping[str, str], params: Mapping[str, str]) -> None:
        _, secret = self._app()
        message = "&".join(f"{k}={v}" for k, v in sorted(query.items()) if k not in ("hmac", "signature"))
        expected = hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
        if query.get("error"):
            return  # a denial carries no hmac; the core turns it into access_denied
        if not hmac.compare_digest(query.get("hmac", ""), expected):
            raise ConnectError(
                "the callback's signature (hmac) does not match: it did not come from Shopify",
                code="invalid_signature",
            )
        if shop_param(query.get("shop")) != params.get("shop"):
            raise ConnectError(
                "the callback names another shop than the one being connected", code="invalid_signature"
            )
        stamp = query.get("timestamp", "")
        if not stamp.isdigit() or abs(datetime.now(UTC).timestamp() - int(stamp)) > CALLBACK_MAX_AGE_S:
            raise ConnectError("the callback is too old; connect again", code="invalid_signature")

    async def _post(self, http: httpx.AsyncClient, shop: str, form: dict[str, str]) -> httpx.Response:
        headers = {"X-Shopify-Shop-Domain": shop} if self.settings.base_url else {}
        url = f"{self._root(shop)}/admin/oauth/access_token"
        return await platform_request(http, "Shopify", "POST", url, data=form, headers=headers)

    async def exchange_code(
        self,
        http: httpx.AsyncClient,
        *,
        code: str,
        redirect_uri: str,
        code_verifier: str | None,
        params: Mapping[str, str],
    ) -> Credentials:
        client_id, secret = self._app()
        shop = params["shop"]
        form = {"client_id": client_id, "client_secret": secret, "code": code, "expiring": "1"}
        response = await self._post(http, shop, form)
        body: dict[str, Any] = response.json() if response.content else {}
        if response.status_code >= 400 or not body.get("access_token"):
            description = str(body.get("error_description") or body.get("error") or response.status_code)
            raise ConnectError(
                f"Shopify refused the authorization code ({description[:200]}); connect again",
                code="invalid_code",
            )
        expires_in = body.get("expires_in")
        credentials = Credentials(
            access_token=str(body["access_token"]),
            refresh_token=body.get("refresh_token"),
            expires_at=datetime.now(UTC) + timedelta(seconds=int(expires_in)) if expires_in else None,
            scopes=tuple(s for s in str(body.get("scope") or "").split(",") if s),
        )
        granted(credentials, NEEDED_SCOPES)
        return credentials

    async def discover_accounts(
        self, http: httpx.AsyncClient, credentials: Credentials, params: Mapping[str, str]
    ) -> Sequence[DiscoveredAccount]:
        """The shop the new token proves, read with the GraphQL Admin API's ``shop`` query (the same
        query and reading as the provider's token check: :func:`~metricx_shopify.client.shop_facts`)."""
        shop = params["shop"]
        headers = {
            TOKEN_HEADER: credentials.access_token or "",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        url = f"{self._root(shop)}/admin/api/{self.settings.api_version}/graphql.json"
        response = await platform_request(
            http, "Shopify", "POST", url, json={"query": queries.SHOP, "variables": {}}, headers=headers
        )
        refused = ShopifyAPI(self.settings, shop).classify(response)
        if isinstance(refused, (TransientError, RateLimited)):
            raise TransientError(f"Shopify could not show the shop now: {refused.message}")
        try:
            if refused is not None:
                raise refused
            info = shop_facts(response.json().get("data") or {})
        except (MetricxError, ValueError, AttributeError) as exc:
            raise ConnectError(
                f"Shopify refused to show the shop ({response.status_code}: {str(exc)[:200]})",
                code="provider_refused",
                status=502,
            ) from None
        if (info["myshopify_domain"] or shop) != shop:
            raise ConnectError("the token belongs to another shop", code="invalid_signature")
        return [
            DiscoveredAccount(
                external_account_id=shop,
                name=info["name"],
                currency=info["currency"],
                timezone=info["iana_timezone"],
            )
        ]
