"""The Shopify provider: token check, shop facts, the shop as an entity, daily store metrics.

Metric mapping (one record per shop-local day), as Shopify's sales reports count:

- level ``store``: ``conversions`` = sales processed that day (test orders, pending, authorized-only
  and voided orders excluded), ``revenue`` = net sales = their ``total_price`` (current, after edits)
  minus every refund *made* that day, in the shop's currency, ``spend`` = 0;
- level ``store_refunds``: ``revenue`` = money refunded that day (shop currency),
  ``conversions`` = orders refunded that day;
- level ``store_pending``: orders processed that day whose payment is pending or only authorized,
  and their total (not sales until paid).

A refund is credited on the day it was made (``processedAt`` of its transaction), not on the
sale's day, so a stored day changes only when a late refund is *made* on it; the revision
horizon (``revision_days`` 60) re-reads the last 60 days.

A backfill window reads its orders with one bulk operation (``bulk_backfill``;
:mod:`metricx_shopify.bulk`); realtime and attribution windows page. A bulk operation that fails
part-way writes no day of the window (a day missing orders would be wrong, not partial): the try
fails as transient and is retried.
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
    SyncMode,
    SyncWindow,
)
from metricx_shopify.auth import ShopifyAuth, grant_of
from metricx_shopify.client import ShopifyClient, shop_domain
from metricx_shopify.mapping import money, shop_amount, timestamp
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


#: Payment not (yet) taken: reported apart from sales (``store_pending``).
UNPAID = frozenset({"pending", "authorized", "partially_paid"})
#: Never sales: the authorization was voided or expired.
NOT_SALES = frozenset({"voided", "expired"})


class ShopifyProvider:
    """Implements ``core.Provider`` for Shopify stores (GraphQL Admin API)."""

    name = "shopify"
    display_name = "Shopify"
    capabilities = Capabilities(
        levels=("store", "store_refunds", "store_pending"),
        primary_level="store",  # net sales; store_refunds is a detail series, not the total
        attribution_window_days=30,
        backfill_days=90,
        backfill_slice_days=30,
        # Refunds land on the day they are made: the nightly pass re-reads 30 days, the weekly
        # deep tier the rest of a 60-day horizon (see the README's revenue rule).
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

    def normalize_account_id(self, raw: str) -> str:
        """A shop is its ``*.myshopify.com`` domain, lowercased (``My-Store.myshopify.com`` is one shop)."""
        return raw.strip().lower().removeprefix("https://").removeprefix("http://").rstrip("/")

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

    def refresh_due(
        self, credentials: Credentials, *, last_refresh: datetime | None, now: datetime, horizon: datetime
    ) -> bool:
        """An expiring token (offline or client credentials) that lapses before ``horizon``: refreshed
        ahead, so a paused or idle store still has a working pair when it is next synced."""
        if grant_of(credentials) == "permanent" or credentials.expires_at is None:
            return False
        return credentials.expires_at <= horizon

    async def refresh_credentials(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials
    ) -> Credentials | None:
        """Rotate under the connection's refresh lock (the new pair stored through ``ctx.credentials``
        before use); the new credentials only when there is no store to keep them."""
        auth = self.client(ctx, account, credentials).auth
        assert auth is not None
        fresh = await auth.rotate_now()
        return fresh if ctx.credentials is None else None

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
            EntityRecord(
                level="store_pending",
                external_id=domain,
                name=f"{name} pending payments",
                status="active",
                parent_level="store",
                parent_external_id=domain,
            ),
        ]

    async def first_visible_day(self, client: ShopifyClient, tz: ZoneInfo) -> date | None:
        """The first shop-local day whose orders the app can read in full: None with ``read_all_orders``,
        else the first whole day of the last 60 days (https://shopify.dev/docs/api/usage/access-scopes)."""
        if "read_all_orders" in await client.access_scopes():
            return None
        oldest = datetime.now(tz) - timedelta(days=ORDER_WINDOW_DAYS)
        return oldest.date() + timedelta(days=1)

    async def fetch_metrics(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials, window: SyncWindow
    ) -> AsyncIterator[list[MetricRecord]]:
        """Daily sales of every day of ``window`` as Shopify's reports count them (zeros for quiet days).

        Orders changed since the window's first day are read (a refund of an older order changes it),
        so every sale processed and every refund made in the window is seen.
        """
        client = self.client(ctx, account, credentials)
        tz = ZoneInfo(window.timezone)
        start = datetime.combine(window.start, time.min, tz).isoformat()
        days = set(window.dates())
        visible_from = await self.first_visible_day(client, tz)
        if visible_from is not None:
            # Without read_all_orders Shopify shows only the last 60 days of orders: older days are
            # not written at all (no row), never as zero sales, and reported to the core as not
            # available, so coverage and the metrics API say so and no backfill asks for them again.
            days = {d for d in days if d >= visible_from}
            if window.start < visible_from:
                ctx.coverage.unavailable_before(visible_from, NO_ALL_ORDERS)
        tally = DailySales(tz, days)
        search = f"updated_at:>='{start}'"
        if window.mode == SyncMode.backfill and self.settings.bulk_backfill:
            async for order in client.bulk("order_metrics", search):
                tally.add(order)
        else:
            async for page in client.iterate("order_metrics", search):
                for order in page.rows:
                    tally.add(order)
        domain, currency = shop_domain(account), account.currency
        records: list[MetricRecord] = []
        for day in sorted(days):
            # Net sales; the refunds credited that day; pending/authorized-only orders, apart.
            for level, count, amount in (
                ("store", tally.sales[day], tally.gross[day] - tally.refunds[day]),
                ("store_refunds", tally.refunded_orders[day], tally.refunds[day]),
                ("store_pending", tally.pending[day], tally.pending_total[day]),
            ):
                records.append(
                    MetricRecord(
                        level=level,
                        entity_external_id=domain,
                        metrics_date=day,
                        conversions=Decimal(count),
                        revenue=amount,
                        currency=currency,
                    )
                )
        yield records


class DailySales:
    """The day totals of the orders added, as Shopify's reports count them (see the module docstring)."""

    def __init__(self, tz: ZoneInfo, days: set[date]) -> None:
        self.tz, self.days = tz, days
        self.sales: dict[object, int] = defaultdict(int)
        self.gross: dict[object, Decimal] = defaultdict(Decimal)
        self.refunds: dict[object, Decimal] = defaultdict(Decimal)
        self.refunded_orders: dict[object, int] = defaultdict(int)
        self.pending: dict[object, int] = defaultdict(int)
        self.pending_total: dict[object, Decimal] = defaultdict(Decimal)

    def add(self, order: dict[str, Any]) -> None:
        """Count one order as the client normalises it (``client.Page`` rows, webhook-shaped; test
        orders are not sales)."""
        if order.get("test") is True:
            return
        what = f"order {str(order.get('id'))[:30]}"
        processed = timestamp(order.get("processed_at") or order.get("created_at"), f"{what} processed_at")
        day = processed.astimezone(self.tz).date() if processed else None
        status = str(order.get("financial_status") or "")
        total = money(order.get("total_price"), f"{what} total_price") or Decimal(0)
        if day in self.days and status in UNPAID:
            self.pending[day] += 1
            self.pending_total[day] += total
        elif day in self.days and status not in NOT_SALES:
            self.sales[day] += 1
            self.gross[day] += total
        refund_days = set()
        for refund_day, amount in refund_amounts(order, self.tz):
            if refund_day in self.days:
                self.refunds[refund_day] += amount
                refund_days.add(refund_day)
        for refund_day in refund_days:
            self.refunded_orders[refund_day] += 1


ORDER_WINDOW_DAYS = 60
NO_ALL_ORDERS = "the app lacks read_all_orders: Shopify shows an app only the last 60 days of orders"


def refund_amounts(order: dict[str, Any], tz: ZoneInfo) -> list[tuple[Any, Decimal]]:
    """(shop-local day, amount in the shop's currency) of each successful refund transaction."""
    what = f"order {str(order.get('id'))[:30]}"
    out = []
    for refund in order.get("refunds") or []:
        for tx in (refund.get("transactions") or []) if isinstance(refund, dict) else []:
            if not isinstance(tx, dict) or tx.get("kind") != "refund" or tx.get("status") != "success":
                continue
            at = timestamp(tx.get("processed_at") or refund.get("created_at"), f"{what} refund processed_at")
            amount = money(shop_amount(tx), f"{what} refund amount") or Decimal(0)
            if at is not None:
                out.append((at.astimezone(tz).date(), amount))
    return out
