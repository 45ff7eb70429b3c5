"""The Shopify provider: token check, shop facts, the shop as an entity, daily store metrics.

Metric mapping (one record per account-local day, by the day an order was created):

- level ``store``: ``conversions`` = orders placed that day (test orders excluded),
  ``revenue`` = net sales = sum(total_price) - refunds of those orders, ``spend`` = 0;
- level ``store_refunds``: ``revenue`` = money refunded on that day's orders,
  ``conversions`` = how many of them have a refund.

Refunds are attributed to the day of the sale (so a day's net sales keep
falling as refunds arrive); the 30-day attribution window re-reads them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from core import (
    AccountInfo,
    AccountRef,
    ApiVersion,
    AuthError,
    Capabilities,
    Credentials,
    EntityRecord,
    MetricRecord,
    ProviderContext,
    SyncWindow,
)
from metricx_shopify.auth import ShopifyAuth
from metricx_shopify.client import ShopifyClient, shop_domain
from metricx_shopify.mapping import money, refunded_amount, timestamp
from metricx_shopify.settings import ShopifySettings, get_shopify_settings


def supported_until(version: str) -> date | None:
    """Shopify supports each stable version ``YYYY-MM`` for at least 12 months from its release on
    the 1st of that month (https://shopify.dev/docs/api/usage/versioning): until ``YYYY+1-MM-01``."""
    year, _, month = version.partition("-")
    if not (year.isdigit() and month.isdigit() and 1 <= int(month) <= 12):
        return None  # "unstable" or a release candidate: no support promise
    return date(int(year) + 1, int(month), 1)


async def verified_shop(client: ShopifyClient) -> dict[str, Any]:
    """The shop the token proves (``shop.myshopify_domain``), refused unless it is the client's shop.

    A tenant cannot create (or keep) a connection to another tenant's shop by naming it while
    authenticating with its own token: webhooks route by the stored shop, so it must be the proven one.
    """
    shop = await client.fetch_shop()
    proven = shop.get("myshopify_domain")
    if proven != client.shop:
        raise AuthError(
            f"The access token belongs to the shop {str(proven)[:80]!r}, not {client.shop!r}: "
            "connect the store with its own token."
        )
    return shop


class ShopifyProvider:
    """Implements ``core.Provider`` for Shopify stores (REST Admin API)."""

    name = "shopify"
    display_name = "Shopify"
    capabilities = Capabilities(
        levels=("store", "store_refunds"),
        primary_level="store",  # net sales; store_refunds is a detail series, not the total
        attribution_window_days=30,
        backfill_days=90,
        backfill_slice_days=30,
        # Refunds land on the order's day: the nightly pass re-reads 30 days, the weekly deep
        # tier the rest of a 60-day refund horizon.
        revision_days=60,
        kind="store",
    )

    def __init__(self, settings: ShopifySettings | None = None) -> None:
        self._settings = settings

    @property
    def settings(self) -> ShopifySettings:
        return self._settings or get_shopify_settings()

    @property
    def api_version(self) -> ApiVersion:
        """The Admin API version in use (``METRICX_SHOPIFY_API_VERSION``) and its end of support."""
        return ApiVersion(self.settings.api_version, supported_until(self.settings.api_version))

    def client(self, ctx: ProviderContext, account: AccountRef, credentials: Credentials) -> ShopifyClient:
        """A client of the account's shop (base URL from settings, else ``https://{shop_domain}``) whose
        token is refreshed when it expires (:mod:`metricx_shopify.auth`)."""
        auth = ShopifyAuth(ctx, account, credentials, self.settings, shop_domain(account))
        return ShopifyClient(ctx, account, credentials, self.settings, auth=auth)

    def check_credentials(self, credentials: Credentials) -> None:
        """No token, no call: the user must reconnect the store."""
        if not (credentials.access_token or credentials.refresh_token):
            raise AuthError("No Shopify access token configured. Please reconnect the store.")

    async def validate_token(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials
    ) -> Credentials | None:
        """The ``shop`` query with the token (refreshed first when it expires): the shop the token
        proves must be the connection's shop. A 401 that no refresh cures is an AuthError.

        Returns None when the credentials are unchanged or were already stored by the refresh
        (``ctx.credentials``); the new credentials when a refresh happened without a store (a
        connection being created), for the caller to store.
        """
        client = self.client(ctx, account, credentials)
        await verified_shop(client)
        auth = client.auth
        if auth is not None and auth.rotated and ctx.credentials is None:
            return auth.credentials
        return None

    async def fetch_account(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials
    ) -> AccountInfo:
        """The shop's name, ``iana_timezone`` and currency."""
        shop = await self.client(ctx, account, credentials).fetch_shop()
        return AccountInfo(name=shop.get("name"), timezone=shop["iana_timezone"], currency=shop["currency"])

    async def sync_entities(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials
    ) -> AsyncIterator[list[EntityRecord]]:
        """The shop itself (level ``store``) and its refunds series (level ``store_refunds``)."""
        shop = await self.client(ctx, account, credentials).fetch_shop()
        domain = shop_domain(account)
        name = shop.get("name") or domain
        yield [
            EntityRecord(level="store", external_id=domain, name=name, status="active", raw=shop),
            EntityRecord(
                level="store_refunds",
                external_id=domain,
                name=f"{name} refunds",
                status="active",
                parent_level="store",
                parent_external_id=domain,
            ),
        ]

    async def fetch_metrics(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials, window: SyncWindow
    ) -> AsyncIterator[list[MetricRecord]]:
        """Daily orders, net sales and refunds of every day of ``window`` (zeros for quiet days)."""
        client = self.client(ctx, account, credentials)
        tz = ZoneInfo(window.timezone)
        start = datetime.combine(window.start, time.min, tz).isoformat()
        end = (datetime.combine(window.end, time.min, tz) + timedelta(days=1, seconds=-1)).isoformat()
        search = f"created_at:>='{start}' AND created_at:<='{end}'"
        orders: dict[object, int] = defaultdict(int)
        gross: dict[object, Decimal] = defaultdict(Decimal)
        refunds: dict[object, Decimal] = defaultdict(Decimal)
        refunded_orders: dict[object, int] = defaultdict(int)
        async for page in client.iterate("order_metrics", search, sort="CREATED_AT"):
            for order in page.rows:
                if order.get("test") is True:
                    continue
                created = timestamp(order.get("created_at"), f"order {order.get('id')} created_at")
                if created is None:
                    continue
                day = created.astimezone(tz).date()
                orders[day] += 1
                gross[day] += money(order.get("total_price"), f"order {order.get('id')} total_price") or 0
                refunded = refunded_amount(order)
                refunds[day] += refunded
                refunded_orders[day] += 1 if refunded > 0 else 0
        domain, currency = shop_domain(account), account.currency
        records: list[MetricRecord] = []
        for day in window.dates():
            records.append(
                MetricRecord(
                    level="store",
                    entity_external_id=domain,
                    metrics_date=day,
                    conversions=Decimal(orders[day]),
                    revenue=gross[day] - refunds[day],
                    currency=currency,
                )
            )
            records.append(
                MetricRecord(
                    level="store_refunds",
                    entity_external_id=domain,
                    metrics_date=day,
                    conversions=Decimal(refunded_orders[day]),
                    revenue=refunds[day],
                    currency=currency,
                )
            )
        yield records
