"""The simulator's state: shops, tokens, the leaky bucket per shop, switchable faults, counters, truth."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from metricx_shopify.simulator.data import Shop, ShopSpec, generate, refund_row

SIM_WEBHOOK_SECRET = "sim-webhook-secret"

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


@dataclass
class Faults:
    """Switchable failures; counters are "the next N requests"."""

    server_errors: int = 0
    unauthorized: bool = False
    throttles: int = 0
    throttle_retry_after_s: float = 2.0
    delay_s: float = 0.0
    malformed: int = 0


@dataclass
class Bucket:
    """Shopify's REST leaky bucket: ``capacity`` requests, draining ``leak_per_s``."""

    capacity: int
    leak_per_s: float
    level: float = 0.0
    at: float = field(default_factory=time.monotonic)

    def take(self) -> tuple[bool, float]:
        """Add one request; (allowed, retry_after_s)."""
        now = time.monotonic()
        self.level = max(0.0, self.level - (now - self.at) * self.leak_per_s)
        self.at = now
        if self.level + 1 > self.capacity:
            return False, max(0.1, (self.level + 1 - self.capacity) / self.leak_per_s)
        self.level += 1
        return True, 0.0

    def header(self) -> str:
        return f"{min(self.capacity, math.ceil(self.level))}/{self.capacity}"


class SimState:
    """Everything the simulator serves and counts; thread-safe enough for one uvicorn thread."""

    def __init__(
        self,
        shops: tuple[ShopSpec, ...] = DEFAULT_SHOPS,
        *,
        bucket_size: int = 40,
        leak_per_s: float = 2.0,
        webhook_secret: str = SIM_WEBHOOK_SECRET,
        now: datetime | None = None,
    ) -> None:
        self.lock = threading.Lock()
        self.bucket_size, self.leak_per_s = bucket_size, leak_per_s
        self.webhook_secret = webhook_secret
        self.now = now
        self.shops: dict[str, Shop] = {}
        self.tokens: dict[str, str] = {}
        self.buckets: dict[str, Bucket] = {}
        self.faults = Faults()
        self.stats: Counter[str] = Counter()
        self.max_level: dict[str, float] = {}
        for spec in shops:
            self.add_shop(spec)

    def clock(self) -> datetime:
        return self.now or datetime.now(UTC).replace(microsecond=0)

    def add_shop(self, spec: ShopSpec) -> Shop:
        """Generate (or regenerate) a shop; its token is ``spec.token``."""
        shop = generate(spec, self.clock())
        self.shops[spec.domain] = shop
        self.tokens[spec.token] = spec.domain
        self.buckets[spec.domain] = Bucket(self.bucket_size, self.leak_per_s)
        return shop

    def reset(self) -> None:
        """Regenerate every shop, clear faults, buckets and counters."""
        specs = [shop.spec for shop in self.shops.values()]
        self.shops, self.tokens, self.buckets = {}, {}, {}
        self.faults, self.stats, self.max_level = Faults(), Counter(), {}
        for spec in specs:
            self.add_shop(spec)

    def configure_bucket(self, size: int | None = None, leak_per_s: float | None = None) -> None:
        self.bucket_size = size or self.bucket_size
        self.leak_per_s = leak_per_s or self.leak_per_s
        for domain in self.buckets:
            self.buckets[domain] = Bucket(self.bucket_size, self.leak_per_s)

    def take(self, domain: str) -> tuple[bool, float, str]:
        """One request against the shop's bucket: (allowed, retry_after_s, call-limit header)."""
        with self.lock:
            bucket = self.buckets[domain]
            allowed, retry_after = bucket.take()
            self.max_level[domain] = max(self.max_level.get(domain, 0.0), bucket.level)
            return allowed, retry_after, bucket.header()

    def refund(self, domain: str, order_id: int, amount: str | None = None) -> dict[str, Any]:
        """Refund an order (default: what is left); its ``updated_at`` moves to now."""
        shop = self.shops[domain]
        order = shop.orders[order_id]
        refunded = _refunded(order)
        value = Decimal(amount) if amount else Decimal(order["total_price"]) - refunded
        at = self.clock()
        order["refunds"].append(refund_row(shop, order, value, at))
        full = refunded + value >= Decimal(order["total_price"])
        order.update(financial_status="refunded" if full else "partially_refunded", updated_at=shop.stamp(at))
        return order

    def truth(self, domain: str) -> dict[str, Any]:
        """Ground truth: row counts and the daily store metrics (shop-local days, test orders excluded)."""
        shop = self.shops[domain]
        tz = ZoneInfo(shop.spec.timezone)
        daily: dict[str, dict[str, Any]] = {}
        for order in shop.orders.values():
            if order["test"]:
                continue
            day = datetime.fromisoformat(order["created_at"]).astimezone(tz).date().isoformat()
            entry = daily.setdefault(day, {"orders": 0, "net_sales": Decimal(0), "refunds": Decimal(0)})
            refunded = _refunded(order)
            entry["orders"] += 1
            entry["net_sales"] += Decimal(order["total_price"]) - refunded
            entry["refunds"] += refunded
        return {
            "products": len(shop.products),
            "customers": len(shop.customers),
            "orders": len(shop.orders),
            "line_items": sum(len(o["line_items"]) for o in shop.orders.values()),
            "refunded_orders": sum(1 for o in shop.orders.values() if o["refunds"]),
            "daily": {
                day: {k: str(v) if isinstance(v, Decimal) else v for k, v in entry.items()}
                for day, entry in sorted(daily.items())
            },
        }


def _refunded(order: dict[str, Any]) -> Decimal:
    return sum(
        (
            Decimal(tx["amount"])
            for r in order["refunds"]
            for tx in r["transactions"]
            if tx["kind"] == "refund"
        ),
        Decimal(0),
    )
