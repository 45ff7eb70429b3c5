"""Shopify JSON rows -> rows of the plugin's tables, validated (a bad row is a PayloadError naming it)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from core import PayloadError

Row = dict[str, Any]
BIGINT_MAX = 2**63 - 1
INT_MAX = 2**31 - 1
MONEY_MAX = Decimal(10) ** 16  # the tables' Numeric(20, 4)


def _id(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise PayloadError(f"{what}: id must be a number, got {str(value)[:40]!r}")
    try:
        number = int(value)
    except ValueError:
        raise PayloadError(f"{what}: id must be a number, got {str(value)[:40]!r}") from None
    if not -BIGINT_MAX <= number <= BIGINT_MAX:
        raise PayloadError(f"{what}: id {str(value)[:40]} is out of range")
    return number


def _count(value: object, what: str) -> int | None:
    if value is None:
        return None
    number = _id(value, what)
    if not -INT_MAX <= number <= INT_MAX:
        raise PayloadError(f"{what}: count {number} is out of range")
    return number


def opt_id(value: object, what: str) -> int | None:
    return None if value in (None, "") else _id(value, what)


def money(value: object, what: str) -> Decimal | None:
    """A money string (``"12.50"``) as Decimal; None when absent."""
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise PayloadError(f"{what} must be an amount like '12.50', got {str(value)[:40]!r}") from None
    if not number.is_finite() or abs(number) >= MONEY_MAX:
        raise PayloadError(f"{what} must be a finite amount below 10^16, got {str(value)[:40]!r}")
    return number


def timestamp(value: object, what: str) -> datetime | None:
    """An ISO 8601 timestamp with the shop's offset; None when absent."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{what} must be an ISO 8601 timestamp, got {str(value)[:40]!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise PayloadError(f"{what} must be an ISO 8601 timestamp, got {value[:40]!r}") from None
    if parsed.tzinfo is None:
        raise PayloadError(f"{what} has no UTC offset: {value[:40]!r}")
    try:
        in_utc = parsed.astimezone(UTC)
    except OverflowError:
        in_utc = None
    if in_utc is None or not 1900 <= in_utc.year <= 9998:
        raise PayloadError(f"{what} is outside the years 1900-9998: {value[:40]!r}")
    return parsed


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def _common(payload: Row, what: str) -> Row:
    return {
        "created_at": timestamp(payload.get("created_at"), f"{what} created_at"),
        "updated_at": timestamp(payload.get("updated_at"), f"{what} updated_at"),
        "raw": payload,
    }


def _require_dict(payload: object, resource: str) -> Row:
    if not isinstance(payload, dict):
        raise PayloadError(f"a {resource} row is not an object: {str(payload)[:60]!r}")
    return payload


def product_row(payload: object) -> Row:
    """A ``shopify_products`` row from a product (webhook shape; GraphQL nodes are normalised into it)."""
    p = _require_dict(payload, "product")
    what = f"product {str(p.get('id'))[:30]}"
    return {
        "shopify_id": _id(p.get("id"), what),
        "title": _text(p.get("title")),
        "handle": _text(p.get("handle")),
        "vendor": _text(p.get("vendor")),
        "product_type": _text(p.get("product_type")),
        "status": _text(p.get("status")),
        "tags": _text(p.get("tags")),
        **_common(p, what),
    }


def customer_row(payload: object) -> Row:
    """A ``shopify_customers`` row from a customer (webhook shape; GraphQL nodes are normalised into it)."""
    c = _require_dict(payload, "customer")
    what = f"customer {str(c.get('id'))[:30]}"
    orders_count = c.get("orders_count")
    return {
        "shopify_id": _id(c.get("id"), what),
        "email": _text(c.get("email")),
        "first_name": _text(c.get("first_name")),
        "last_name": _text(c.get("last_name")),
        "state": _text(c.get("state")),
        "orders_count": _count(orders_count, what),
        "total_spent": money(c.get("total_spent"), f"{what} total_spent"),
        "currency": _text(c.get("currency")),
        **_common(c, what),
    }


def shop_amount(tx: Row) -> object:
    """A transaction's amount in the shop's currency: ``amount_set.shop_money`` when the payload has it
    (a refund paid back in the customer's currency has its ``amount`` in that currency), else ``amount``
    (the normalised GraphQL transaction already holds ``shopMoney`` there)."""
    bag = tx.get("amount_set")
    if isinstance(bag, dict) and isinstance(bag.get("shop_money"), dict):
        return bag["shop_money"].get("amount")
    return tx.get("amount")


def refunded_amount(order: Row) -> Decimal:
    """Money refunded on an order, in the shop's currency: its successful refund transactions."""
    total = Decimal(0)
    refunds = order.get("refunds") or []
    if not isinstance(refunds, list):
        raise PayloadError(f"order {str(order.get('id'))[:30]}: refunds is not a list")
    for refund in refunds:
        transactions = (refund.get("transactions") or []) if isinstance(refund, dict) else []
        if not isinstance(transactions, list):
            raise PayloadError(f"order {str(order.get('id'))[:30]}: refund transactions is not a list")
        for tx in transactions:
            if (
                isinstance(tx, dict)
                and tx.get("kind") == "refund"
                and tx.get("status", "success") == "success"
            ):
                total += money(shop_amount(tx), f"order {order.get('id')} refund amount") or Decimal(0)
    return total


def line_item_rows(order: Row, what: str) -> list[Row]:
    items = order.get("line_items") or []
    if not isinstance(items, list):
        raise PayloadError(f"{what}: line_items is not a list")
    rows = []
    for item in items:
        li = _require_dict(item, "line item")
        li_what = f"{what} line item {str(li.get('id'))[:30]}"
        quantity = li.get("quantity")
        rows.append(
            {
                "shopify_id": _id(li.get("id"), li_what),
                "product_shopify_id": opt_id(li.get("product_id"), li_what),
                "variant_shopify_id": opt_id(li.get("variant_id"), li_what),
                "title": _text(li.get("title")),
                "sku": _text(li.get("sku")),
                "quantity": _count(quantity, li_what),
                "price": money(li.get("price"), f"{li_what} price"),
                "total_discount": money(li.get("total_discount"), f"{li_what} total_discount"),
                "raw": li,
            }
        )
    return rows


def order_row(payload: object) -> tuple[Row, list[Row] | None]:
    """A ``shopify_orders`` row and its line item rows from an order (webhook body or normalised
    GraphQL node).

    The line items are None when the payload has no ``line_items`` key (they are then left alone).
    """
    o = _require_dict(payload, "order")
    what = f"order {str(o.get('id'))[:30]}"
    customer = o.get("customer") if isinstance(o.get("customer"), dict) else {}
    row = {
        "shopify_id": _id(o.get("id"), what),
        "name": _text(o.get("name")),
        "email": _text(o.get("email")),
        "customer_shopify_id": opt_id((customer or {}).get("id"), what),
        "processed_at": timestamp(o.get("processed_at"), f"{what} processed_at"),
        "cancelled_at": timestamp(o.get("cancelled_at"), f"{what} cancelled_at"),
        "currency": _text(o.get("currency")),
        "total_price": money(o.get("total_price"), f"{what} total_price"),
        "subtotal_price": money(o.get("subtotal_price"), f"{what} subtotal_price"),
        "total_tax": money(o.get("total_tax"), f"{what} total_tax"),
        "total_discounts": money(o.get("total_discounts"), f"{what} total_discounts"),
        "total_refunded": refunded_amount(o) if "refunds" in o else None,
        "financial_status": _text(o.get("financial_status")),
        "fulfillment_status": _text(o.get("fulfillment_status")),
        "source_name": _text(o.get("source_name")),
        "landing_site": _text(o.get("landing_site")),
        "referring_site": _text(o.get("referring_site")),
        "tags": _text(o.get("tags")),
        "test": o.get("test") if isinstance(o.get("test"), bool) else None,
        **_common(o, what),
    }
    items = line_item_rows(o, what) if "line_items" in o else None
    return row, items
