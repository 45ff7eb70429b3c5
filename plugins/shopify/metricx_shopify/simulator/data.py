"""Deterministic seeded shops: products, customers and orders in the Admin API's REST shapes.

Money is a string (``"19.99"``), timestamps are ISO 8601 with the shop's UTC
offset, orders carry line items, a customer, refunds (with transactions) and
``test`` / ``cancelled_at``. The same spec, seed and ``now`` give the same shop.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

Row = dict[str, Any]

FIRST = ("Ada", "Grace", "Linus", "Margaret", "Ken", "Barbara", "Alan", "Edsger", "Frances", "Dennis")
LAST = ("Lovelace", "Hopper", "Torvalds", "Hamilton", "Thompson", "Liskov", "Turing", "Dijkstra", "Allen")
ITEMS = ("Mug", "T-shirt", "Hoodie", "Sticker", "Notebook", "Cap", "Poster", "Tote bag", "Socks", "Pin")
SOURCES = ("web", "pos", "shopify_draft_order", "iphone")
#: The simulated stores' one tax rate, on the subtotal.
TAX_RATE = Decimal("0.08")


@dataclass(frozen=True, slots=True)
class ShopSpec:
    """What to generate: a shop's domain, size, timezone and currency, from a seed."""

    domain: str
    seed: int = 1
    products: int = 20
    customers: int = 30
    orders: int = 100
    days: int = 60
    timezone: str = "America/New_York"
    currency: str = "USD"
    name: str | None = None
    #: The access scopes granted to the app; without ``read_all_orders`` only orders created in the
    #: last 60 days are visible (https://shopify.dev/docs/api/usage/access-scopes#orders-permissions).
    scopes: tuple[str, ...] = ("read_orders", "read_all_orders", "read_products", "read_customers")

    @property
    def token(self) -> str:
        """The shop's access token (offline tokens belong to one shop)."""
        return f"shpat_sim_{self.domain.split('.')[0].replace('-', '_')}"


@dataclass
class Shop:
    """A shop's data as the simulator serves it (rows keyed by id)."""

    spec: ShopSpec
    info: Row
    products: dict[int, Row] = field(default_factory=dict)
    customers: dict[int, Row] = field(default_factory=dict)
    orders: dict[int, Row] = field(default_factory=dict)
    next_id: int = 90_000_000_000

    def stamp(self, moment: datetime) -> str:
        """A timestamp as Shopify writes it: seconds, with the shop's UTC offset."""
        return moment.astimezone(ZoneInfo(self.spec.timezone)).isoformat(timespec="seconds")

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))


def _shop_info(spec: ShopSpec, created: datetime) -> Row:
    return {
        "id": 60_000_000 + spec.seed,
        "name": spec.name or spec.domain.split(".")[0].replace("-", " ").title(),
        "domain": spec.domain,
        "myshopify_domain": spec.domain,
        "email": f"owner@{spec.domain}",
        "currency": spec.currency,
        "iana_timezone": spec.timezone,
        "timezone": f"(GMT) {spec.timezone}",
        "plan_name": "basic",
        "created_at": created.astimezone(ZoneInfo(spec.timezone)).isoformat(timespec="seconds"),
    }


def _products(shop: Shop, rnd: random.Random, start: datetime) -> None:
    for i in range(shop.spec.products):
        pid = 7_000_000_000 + i
        created = start + timedelta(minutes=rnd.randint(0, 600))
        title = f"{rnd.choice(ITEMS)} {i + 1}"
        shop.products[pid] = {
            "id": pid,
            "title": title,
            "handle": title.lower().replace(" ", "-"),
            "vendor": shop.info["name"],
            "product_type": rnd.choice(("Apparel", "Accessories", "Stationery")),
            "status": rnd.choice(("active", "active", "active", "draft", "archived")),
            "tags": "",
            "created_at": shop.stamp(created),
            "updated_at": shop.stamp(created + timedelta(minutes=rnd.randint(0, 300))),
            "variants": [
                {
                    "id": pid * 10 + 1,
                    "product_id": pid,
                    "price": _money(Decimal(rnd.randint(500, 9000)) / 100),
                }
            ],
        }


def _customers(shop: Shop, rnd: random.Random, start: datetime) -> None:
    # Customers are people: their ids and e-mails differ from shop to shop (stable per domain), so
    # a redaction test that searches every table finds only its own shop's customer.
    base = 6_000_000_000 + zlib.crc32(shop.spec.domain.encode()) % 100_000 * 100_000
    for i in range(shop.spec.customers):
        cid = base + i
        created = start + timedelta(minutes=rnd.randint(0, 1200))
        first, last = rnd.choice(FIRST), rnd.choice(LAST)
        shop.customers[cid] = {
            "id": cid,
            "email": f"{first.lower()}.{last.lower()}{cid - 6_000_000_000}@example.com",
            "first_name": first,
            "last_name": last,
            "state": "enabled",
            "orders_count": 0,
            "total_spent": "0.00",
            "currency": shop.spec.currency,
            "created_at": shop.stamp(created),
            "updated_at": shop.stamp(created + timedelta(minutes=rnd.randint(0, 60))),
        }


#: The customer's currency of a multi-currency order, and shop currency units per unit of it.
PRESENTMENT = {
    "USD": ("EUR", Decimal("1.08")),
    "EUR": ("USD", Decimal("0.93")),
    "JPY": ("USD", Decimal("150")),
}


def shop_to_presentment(order: Row, shop_amount: Decimal) -> Decimal:
    rate = Decimal(order.get("presentment_rate") or 1)
    return (shop_amount / rate).quantize(Decimal("0.01"))


def refund_row(shop: Shop, order: Row, amount: Decimal, at: datetime) -> Row:
    """A refund with one successful refund transaction of ``amount`` in the shop's currency. The
    transaction is in the order's presentment currency (``amount``/``currency``, as Shopify's REST
    transaction is), the shop-currency amount in ``amount_set.shop_money``."""
    refund_id = shop.new_id()
    presentment = order.get("presentment_currency") or order["currency"]
    paid = shop_to_presentment(order, amount)
    return {
        "id": refund_id,
        "order_id": order["id"],
        "created_at": shop.stamp(at),
        "note": "simulated refund",
        "refund_line_items": [],
        "transactions": [
            {
                "id": shop.new_id(),
                "order_id": order["id"],
                "kind": "refund",
                "status": "success",
                "amount": _money(paid),
                "currency": presentment,
                "shop_amount": _money(amount),
                "amount_set": {
                    "shop_money": {"amount": _money(amount), "currency_code": order["currency"]},
                    "presentment_money": {"amount": _money(paid), "currency_code": presentment},
                },
                "created_at": shop.stamp(at),
            }
        ],
    }


def _order(shop: Shop, rnd: random.Random, n: int, created: datetime, line_id: list[int]) -> Row:
    oid = 5_000_000_000 + n
    lines, subtotal = [], Decimal(0)
    for _ in range(rnd.randint(1, 3)):
        product = shop.products[rnd.choice(sorted(shop.products))] if shop.products else None
        price = Decimal(product["variants"][0]["price"]) if product else Decimal("9.99")
        quantity = rnd.randint(1, 3)
        line_id[0] += 1
        lines.append(
            {
                "id": line_id[0],
                "product_id": product["id"] if product else None,
                "variant_id": product["variants"][0]["id"] if product else None,
                "title": product["title"] if product else "Custom item",
                "sku": f"SKU-{line_id[0]}",
                "quantity": quantity,
                "price": _money(price),
                "total_discount": "0.00",
            }
        )
        subtotal += price * quantity
    tax = (subtotal * TAX_RATE).quantize(Decimal("0.01"))
    customer = shop.customers[rnd.choice(sorted(shop.customers))] if shop.customers else None
    updated = created + timedelta(minutes=rnd.randint(1, 50))
    return {
        "id": oid,
        "name": f"#{1000 + n}",
        "email": customer["email"] if customer else None,
        "created_at": shop.stamp(created),
        "updated_at": shop.stamp(updated),
        "processed_at": shop.stamp(created),
        "cancelled_at": None,
        "closed_at": None,
        "currency": shop.spec.currency,
        "subtotal_price": _money(subtotal),
        "total_tax": _money(tax),
        "total_discounts": "0.00",
        "total_price": _money(subtotal + tax),
        "financial_status": "paid",
        "fulfillment_status": rnd.choice((None, "fulfilled", "partial")),
        "customer": {"id": customer["id"], "email": customer["email"]} if customer else None,
        "line_items": lines,
        "refunds": [],
        "landing_site": "/products",
        "referring_site": rnd.choice(("https://www.google.com/", "https://www.facebook.com/", "")),
        "source_name": rnd.choice(SOURCES),
        "tags": "",
        "test": rnd.random() < 0.02,
    }


def apply_edit(order: Row) -> None:
    """An order edit after the sale (as an ``orderEditCommit`` leaves it): the last line item removed,
    or one unit fewer of a single item, or, for a single unit, a 20 % discount; subtotal, tax and
    total follow."""
    lines = order["line_items"]
    if len(lines) > 1:
        lines.pop()
    elif lines[0]["quantity"] > 1:
        lines[0]["quantity"] -= 1
    else:
        lines[0]["total_discount"] = _money(Decimal(lines[0]["price"]) * Decimal("0.2"))
    subtotal = sum(
        (Decimal(li["price"]) * li["quantity"] - Decimal(li["total_discount"]) for li in lines), Decimal(0)
    )
    tax = (subtotal * TAX_RATE).quantize(Decimal("0.01"))
    discounts = sum((Decimal(li["total_discount"]) for li in lines), Decimal(0))
    order.update(
        subtotal_price=_money(subtotal),
        total_tax=_money(tax),
        total_discounts=_money(discounts),
        total_price=_money(subtotal + tax),
    )


def _orders(shop: Shop, rnd: random.Random, now: datetime) -> None:
    line_id = [13_000_000_000]
    span = timedelta(days=shop.spec.days) - timedelta(hours=3)
    for n in range(shop.spec.orders):
        created = now - timedelta(days=shop.spec.days) + span * rnd.random()
        order = _order(shop, rnd, n, created, line_id)
        roll = rnd.random()
        if rnd.random() < 0.25:  # paid in the customer's currency
            currency, rate = PRESENTMENT.get(shop.spec.currency, ("EUR", Decimal("1.08")))
            order.update(presentment_currency=currency, presentment_rate=str(rate))
        if roll < 0.08:  # refunded a day later (still well in the past)
            at = min(created + timedelta(days=1), now - timedelta(hours=2))
            refund = refund_row(
                shop, order, (Decimal(order["total_price"]) / 2).quantize(Decimal("0.01")), at
            )
            order.update(refunds=[refund], financial_status="partially_refunded", updated_at=shop.stamp(at))
        elif roll < 0.11:  # cancelled before capture: the authorization was voided
            order.update(cancelled_at=order["updated_at"], financial_status="voided")
        elif roll < 0.14:  # payment pending (e.g. bank transfer)
            order["financial_status"] = "pending"
        elif roll < 0.16:  # authorized, not captured yet
            order["financial_status"] = "authorized"
        elif roll < 0.19:  # edited after the sale: an item removed (or one fewer), the totals lowered
            at = min(created + timedelta(hours=5), now - timedelta(hours=1))
            apply_edit(order)
            order.update(updated_at=shop.stamp(at), tags="edited")
        elif roll < 0.25:
            order["closed_at"] = order["updated_at"]
        shop.orders[order["id"]] = order
        if order["customer"]:
            customer = shop.customers[order["customer"]["id"]]
            customer["orders_count"] += 1
            customer["total_spent"] = _money(Decimal(customer["total_spent"]) + Decimal(order["total_price"]))


def generate(spec: ShopSpec, now: datetime) -> Shop:
    """Build the shop of ``spec`` as of ``now`` (deterministic per spec and now)."""
    rnd = random.Random(spec.seed)
    start = now - timedelta(days=spec.days + 30)
    shop = Shop(spec=spec, info=_shop_info(spec, start))
    _products(shop, rnd, start)
    _customers(shop, rnd, start)
    _orders(shop, rnd, now)
    return shop
