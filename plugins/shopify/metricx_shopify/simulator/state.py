"""The simulator's state on the shared base (clock, faults, request log): shops, tokens, the GraphQL
cost bucket per shop, bulk operations, counters, ground truth."""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from core.testing.simulator import Simulator, SimulatorError
from metricx_shopify.simulator.data import Shop, ShopSpec, apply_edit, generate, refund_row
from metricx_shopify.simulator.graphql import PointBucket

SIM_WEBHOOK_SECRET = "sim-webhook-secret"
SIM_CLIENT_ID = "sim-client-id"
SIM_CLIENT_SECRET = "sim-client-secret"
#: Expiring offline tokens live 60 minutes, their refresh tokens 90 days; client-credentials tokens 24 h
#: (https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens).
ACCESS_TTL_S = 3600
REFRESH_TTL_S = 90 * 86400
CLIENT_CREDENTIALS_TTL_S = 86399
# A return comes some days after the purchase (delivery, then the customer's decision).
RETURN_AFTER = timedelta(days=3)
ORDER_WINDOW = timedelta(days=60)
#: Payment not (yet) taken: reported apart from sales.
UNPAID = frozenset({"pending", "authorized", "partially_paid"})
#: Never sales: the authorization was voided or expired.
NOT_SALES = frozenset({"voided", "expired"})
#: GraphQL cost bucket by plan: (bucket points, restored per second); the restore rates are Shopify's
#: (https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits), the bucket 20 s of restore.
#: Tests about pacing keep "standard"; the demo and tests that only need data run on "plus".
PLANS: Mapping[str, tuple[float, float]] = {
    "standard": (2000.0, 100.0),
    "advanced": (4000.0, 200.0),
    "plus": (20000.0, 1000.0),
    "enterprise": (40000.0, 2000.0),
}

#: The webhook topic Shopify sends when a resource is deleted; its body is ``{"id": <numeric id>}``
#: (fixtures/webhook_orders_delete.json, webhook_products_delete.json).
DELETE_TOPICS: Mapping[str, str] = {
    "orders": "orders/delete",
    "products": "products/delete",
    "customers": "customers/delete",
}
#: What a customer's redaction erases from their orders (kept as sales, without the person).
PERSONAL_ORDER_FIELDS = (
    "email",
    "contact_email",
    "phone",
    "customer",
    "billing_address",
    "shipping_address",
    "note",
    "browser_ip",
    "client_details",
)

DEFAULT_SHOPS = (
    ShopSpec("sim-store-1.myshopify.com", seed=1, products=40, customers=60, orders=150),
    ShopSpec(
        "sim-store-2.myshopify.com",
        seed=2,
        products=10,
        customers=15,
        orders=40,
        timezone="Europe/Berlin",
        currency="EUR",
    ),
)


class SimState(Simulator):
    """Everything the simulator serves and counts; thread-safe enough for one uvicorn thread."""

    extra_fault_kinds = frozenset({"bulk_failed", "bulk_url_expired"})

    def __init__(
        self,
        shops: tuple[ShopSpec, ...] = DEFAULT_SHOPS,
        *,
        webhook_secret: str = SIM_WEBHOOK_SECRET,
        now: datetime | None = None,
        plan: str = "standard",
    ) -> None:
        """``now`` freezes the simulated clock (shops are generated around it); ``plan`` (a key of
        :data:`PLANS`) sets every shop's GraphQL cost bucket."""
        super().__init__(now=now)
        self.lock = threading.Lock()
        self.webhook_secret = webhook_secret
        self.shops: dict[str, Shop] = {}
        self.tokens: dict[str, str] = {}
        self.stats: Counter[str] = Counter()
        #: bulk query operations by number (see ``simulator/bulk.py``)
        self.bulk_ops: dict[int, dict[str, Any]] = {}
        if plan not in PLANS:
            raise ValueError(f"unknown Shopify plan {plan!r}: one of {', '.join(PLANS)}")
        self.point_max, self.point_restore = PLANS[plan]
        self.point_buckets: dict[str, PointBucket] = {}
        self.client_id, self.client_secret = SIM_CLIENT_ID, SIM_CLIENT_SECRET
        #: expiring access tokens and live refresh tokens: token -> (shop, expires at, simulated time)
        self.expiring: dict[str, tuple[str, datetime]] = {}
        self.refresh_tokens: dict[str, tuple[str, datetime]] = {}
        self.access_ttl_s = ACCESS_TTL_S
        for spec in shops:
            self.add_shop(spec)

    def now(self) -> datetime:
        """Simulated time to the second, as Shopify's timestamps are."""
        return super().now().replace(microsecond=0)

    def add_shop(self, spec: ShopSpec) -> Shop:
        """Generate (or regenerate) a shop; its token is ``spec.token``."""
        shop = generate(spec, self.now())
        self.shops[spec.domain] = shop
        self.tokens[spec.token] = spec.domain
        self.point_buckets.pop(spec.domain, None)
        return shop

    def token_shop(self, token: str) -> str | None:
        """The shop an access token belongs to (None: unknown or expired)."""
        if token in self.tokens:
            return self.tokens[token]
        with self.lock:
            entry = self.expiring.get(token)
        if entry is None or entry[1] <= self.now():
            return None
        return entry[0]

    def issue_tokens(self, domain: str, *, with_refresh: bool = True) -> dict[str, Any]:
        """A new expiring access token (and refresh token) for the shop, as the token endpoint answers."""
        now = self.now()
        access = f"shpat_exp_{secrets.token_hex(12)}"
        ttl = self.access_ttl_s if with_refresh else CLIENT_CREDENTIALS_TTL_S
        with self.lock:
            self.expiring[access] = (domain, now + timedelta(seconds=ttl))
            body: dict[str, Any] = {
                "access_token": access,
                "scope": ",".join(self.shops[domain].spec.scopes),
                "expires_in": ttl,
            }
            if with_refresh:
                refresh = f"shprt_{secrets.token_hex(16)}"
                self.refresh_tokens[refresh] = (domain, now + timedelta(seconds=REFRESH_TTL_S))
                body.update(refresh_token=refresh, refresh_token_expires_in=REFRESH_TTL_S)
        return body

    def use_refresh_token(self, domain: str, refresh: str) -> dict[str, Any] | None:
        """Rotate: the refresh token dies with its use; None when it is unknown, used or expired."""
        with self.lock:
            entry = self.refresh_tokens.pop(refresh, None)
            if entry is None or entry[0] != domain or entry[1] <= self.now():
                self.stats["invalid_grant"] += 1
                return None
            self.stats["rotations"] += 1
        return self.issue_tokens(domain)

    def point_bucket(self, domain: str) -> PointBucket:
        """The shop's GraphQL cost bucket (``point_max`` points, ``point_restore`` per second)."""
        with self.lock:
            bucket = self.point_buckets.get(domain)
            if bucket is None:
                bucket = PointBucket(self.point_max, self.point_restore, self.point_max)
                self.point_buckets[domain] = bucket
            return bucket

    def configure_points(self, maximum: float | None = None, restore_rate: float | None = None) -> None:
        """Every shop's GraphQL cost bucket from now on: ``maximum`` points, ``restore_rate`` per second."""
        self.point_max = float(maximum or self.point_max)
        self.point_restore = float(restore_rate or self.point_restore)
        self.point_buckets = {}

    def visible(self, domain: str, resource: str, row: dict[str, Any]) -> bool:
        """Without ``read_all_orders`` an app sees only orders created in the last 60 days."""
        if resource != "orders" or "read_all_orders" in self.shops[domain].spec.scopes:
            return True
        return datetime.fromisoformat(row["created_at"]) >= self.now() - ORDER_WINDOW

    def on_reset(self) -> None:
        """Regenerate every shop; clear buckets and counters."""
        specs = [shop.spec for shop in self.shops.values()]
        self.shops, self.tokens = {}, {}
        self.stats = Counter()
        self.point_buckets = {}
        self.expiring, self.refresh_tokens = {}, {}
        for spec in specs:
            self.add_shop(spec)

    def on_clock_advanced(self, before: datetime, after: datetime) -> None:
        """Customers return orders as days pass: for each simulated day, each shop refunds its newest
        order placed at least ``RETURN_AFTER`` earlier without a refund (stamped now, so ``updated_at``
        moves)."""
        days = int((after - before).total_seconds() // 86400)
        for domain in list(self.shops):
            for _ in range(days):
                order = self._returnable(domain, after)
                if order is None:
                    break
                self.refund(domain, order["id"])

    def _returnable(self, domain: str, now: datetime) -> dict[str, Any] | None:
        candidates = [
            o
            for o in self.shops[domain].orders.values()
            if not (o["test"] or o["cancelled_at"] or o["refunds"])
            and o["financial_status"] not in UNPAID | NOT_SALES
            and datetime.fromisoformat(o["created_at"]) <= now - RETURN_AFTER
        ]
        return max(candidates, key=lambda o: (datetime.fromisoformat(o["created_at"]), o["id"]), default=None)

    def truth(self, params: Mapping[str, str]) -> Any:
        """``GET /_sim/truth?shop=DOMAIN``: see :meth:`shop_truth`."""
        domain = params.get("shop") or params.get("account", "")
        if domain not in self.shops:
            raise SimulatorError("use ?shop=<a known shop domain>")
        return self.shop_truth(domain)

    def refund(self, domain: str, order_id: int, amount: str | None = None) -> dict[str, Any]:
        """Refund an order (default: what is left); its ``updated_at`` moves to now."""
        shop = self.shops[domain]
        order = shop.orders[order_id]
        refunded = _refunded(order)
        value = Decimal(amount) if amount else Decimal(order["total_price"]) - refunded
        at = self.now()
        order["refunds"].append(refund_row(shop, order, value, at))
        full = refunded + value >= Decimal(order["total_price"])
        order.update(financial_status="refunded" if full else "partially_refunded", updated_at=shop.stamp(at))
        return order

    def edit_order(self, domain: str, order_id: int) -> dict[str, Any]:
        """A merchant's order edit (as the generator makes them: the last line removed, one unit
        fewer, or a discount); subtotal, tax and total follow and ``updated_at`` moves to now.
        Returns the ``orders/edited`` body Shopify sends, which describes the edit (line item
        deltas), not the edited order (fixtures/webhook_orders_edited.json)."""
        shop = self.shops[domain]
        with self.lock:
            order = shop.orders[order_id]
            before = {li["id"]: li["quantity"] for li in order["line_items"]}
            apply_edit(order)
            after = {li["id"]: li["quantity"] for li in order["line_items"]}
            at = shop.stamp(self.now())
            order.update(updated_at=at, tags="edited")
        removals = [
            {"id": line_id, "delta": quantity - after.get(line_id, 0)}
            for line_id, quantity in before.items()
            if after.get(line_id, 0) < quantity
        ]
        return {
            "order_edit": {
                "id": secrets.randbits(56),
                "app_id": None,
                "created_at": at,
                "committed_at": at,
                "notify_customer": False,
                "order_id": order_id,
                "staff_note": "",
                "user_id": None,
                "line_items": {"additions": [], "removals": removals},
                "discounts": {"line_item": {"additions": [], "removals": []}},
                "shipping_lines": {"additions": [], "removals": []},
            }
        }

    def delete(self, domain: str, resource: str, item_id: int) -> dict[str, Any]:
        """Delete an order, product or customer as a merchant does in the admin: from now on it is in
        no GraphQL list, ``order(id:)`` answer, id listing or bulk result. Returns the body of the
        ``{resource}/delete`` webhook Shopify sends (:data:`DELETE_TOPICS`); sign and send it with
        :func:`~metricx_shopify.simulator.webhooks.send_order_webhook`. As in Shopify, a customer who
        has orders cannot be deleted (SimulatorError: delete the orders or redact the customer)."""
        if resource not in DELETE_TOPICS:
            raise SimulatorError(f"only {', '.join(DELETE_TOPICS)} can be deleted")
        shop = self.shops[domain]
        table: dict[int, dict[str, Any]] = getattr(shop, resource)
        with self.lock:
            if item_id not in table:
                raise SimulatorError(f"{domain} has no {resource[:-1]} {item_id}")
            if resource == "customers" and _orders_of(shop, item_id):
                raise SimulatorError(f"customer {item_id} has orders and cannot be deleted")
            del table[item_id]
            self.stats[f"deleted_{resource}"] += 1
        return {"id": item_id}

    def redact_customer(self, domain: str, customer_id: int) -> dict[str, Any]:
        """Erase a customer as Shopify does when the merchant asks it to (privacy law erasure): the
        customer is gone and their orders keep their sales but lose :data:`PERSONAL_ORDER_FIELDS`
        (``updated_at`` does not move: only the webhook tells an app). Returns the body of the
        ``customers/redact`` webhook Shopify then sends (fixtures/webhook_customers_redact.json)."""
        shop = self.shops[domain]
        with self.lock:
            customer = shop.customers.get(customer_id)
            if customer is None:
                raise SimulatorError(f"{domain} has no customer {customer_id}")
            orders = _orders_of(shop, customer_id, customer.get("email"))
            body = {
                "shop_id": shop.info["id"],
                "shop_domain": domain,
                "customer": {
                    "id": customer_id,
                    "email": customer.get("email"),
                    "phone": customer.get("phone"),
                },
                "orders_to_redact": sorted(o["id"] for o in orders),
            }
            for order in orders:
                order.update({key: None for key in PERSONAL_ORDER_FIELDS if key in order})
            del shop.customers[customer_id]
            self.stats["redacted_customers"] += 1
        return body

    def shop_truth(self, domain: str) -> dict[str, Any]:
        """Ground truth from the simulator's own order model (shop-local days, test orders excluded),
        as Shopify's sales reports count: an order is a sale on the day it was processed unless its
        payment is pending, only authorized, or was voided (then it is reported apart, or not at
        all); each refund is deducted, in the shop's currency, on the day it was made."""
        shop = self.shops[domain]
        tz = ZoneInfo(shop.spec.timezone)
        daily: dict[str, dict[str, Any]] = {}

        def entry(day: str) -> dict[str, Any]:
            return daily.setdefault(
                day,
                {
                    "orders": 0,
                    "gross_sales": Decimal(0),
                    "refunds": Decimal(0),
                    "refunded_orders": 0,
                    "pending_orders": 0,
                    "pending_sales": Decimal(0),
                },
            )

        for order in shop.orders.values():
            if order["test"]:
                continue
            day = datetime.fromisoformat(order["processed_at"]).astimezone(tz).date().isoformat()
            status = order["financial_status"]
            if status in UNPAID:
                entry(day)["pending_orders"] += 1
                entry(day)["pending_sales"] += Decimal(order["total_price"])
            elif status not in NOT_SALES:
                entry(day)["orders"] += 1
                entry(day)["gross_sales"] += Decimal(order["total_price"])
            refund_days = set()
            for refund in order["refunds"]:
                for tx in refund["transactions"]:
                    if tx["kind"] == "refund" and tx.get("status", "success") == "success":
                        rday = datetime.fromisoformat(tx["created_at"]).astimezone(tz).date().isoformat()
                        entry(rday)["refunds"] += Decimal(tx.get("shop_amount") or tx["amount"])
                        refund_days.add(rday)
            for rday in refund_days:
                entry(rday)["refunded_orders"] += 1
        for values in daily.values():
            values["net_sales"] = values["gross_sales"] - values["refunds"]
        return {
            "products": len(shop.products),
            "customers": len(shop.customers),
            "orders": len(shop.orders),
            "line_items": sum(len(o["line_items"]) for o in shop.orders.values()),
            "refunded_orders": sum(1 for o in shop.orders.values() if o["refunds"]),
            "kinds": {
                "cancelled": sum(1 for o in shop.orders.values() if o["cancelled_at"]),
                "voided": sum(1 for o in shop.orders.values() if o["financial_status"] == "voided"),
                "pending": sum(1 for o in shop.orders.values() if o["financial_status"] in UNPAID),
                "edited": sum(1 for o in shop.orders.values() if o["tags"] == "edited"),
                "multi_currency_refunded": sum(
                    1 for o in shop.orders.values() if o["refunds"] and o.get("presentment_currency")
                ),
            },
            "daily": {
                day: {k: str(v) if isinstance(v, Decimal) else v for k, v in entry.items()}
                for day, entry in sorted(daily.items())
            },
        }


def _orders_of(shop: Shop, customer_id: int, email: str | None = None) -> list[dict[str, Any]]:
    """The shop's orders placed by the customer (linked by id, or by e-mail)."""
    return [
        o
        for o in shop.orders.values()
        if (o.get("customer") or {}).get("id") == customer_id or (email and o.get("email") == email)
    ]


def _refunded(order: dict[str, Any]) -> Decimal:
    """What was refunded on an order, in the shop's currency."""
    return sum(
        (
            Decimal(tx.get("shop_amount") or tx["amount"])
            for r in order["refunds"]
            for tx in r["transactions"]
            if tx["kind"] == "refund"
        ),
        Decimal(0),
    )
