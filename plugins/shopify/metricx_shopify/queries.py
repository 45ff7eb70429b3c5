"""The GraphQL documents the plugin sends, and their nodes turned into the REST/webhook row shape.

Numeric ids come from ``legacyResourceId`` (a GID's last segment where a node has none), money
from ``shopMoney`` of the ``*Set`` money bags (the shop's currency; ``presentmentMoney`` is the
customer's), enums are lower-cased as REST writes them, tag lists are joined with ``", "``.
"""

from __future__ import annotations

import json
from typing import Any

INLINE_LINE_ITEMS = 3  # more are read with ORDER_LINE_ITEMS
INLINE_REFUNDS = 3  # Order.refunds is a list (truncated by `first`): a full one is read again whole
INLINE_REFUND_TRANSACTIONS = 3  # Refund.transactions is a connection: the rest by REFUND_TRANSACTIONS

SHOP = "query Shop { shop { id name ianaTimezone currencyCode myshopifyDomain } }"

ACCESS_SCOPES = "query AccessScopes { currentAppInstallation { accessScopes { handle } } }"

_SHOP_MONEY = "shopMoney { amount currencyCode }"
_MONEY = "shopMoney { amount currencyCode } presentmentMoney { amount currencyCode }"
TRANSACTION_FIELDS = f"id kind status processedAt amountSet {{ {_MONEY} }}"
REFUND_FIELDS = f"""
  id legacyResourceId createdAt
  transactions(first: {INLINE_REFUND_TRANSACTIONS}) {{
    pageInfo {{ hasNextPage endCursor }} nodes {{ {TRANSACTION_FIELDS} }}
  }}
"""

LINE_ITEM_FIELDS = f"""
  id title sku quantity
  originalUnitPriceSet {{ {_SHOP_MONEY} }}
  totalDiscountSet {{ {_SHOP_MONEY} }}
  product {{ legacyResourceId }}
  variant {{ legacyResourceId }}
"""

ORDER_FIELDS = f"""
  id legacyResourceId name email createdAt updatedAt processedAt cancelledAt closedAt test tags
  currencyCode presentmentCurrencyCode displayFinancialStatus displayFulfillmentStatus sourceName
  totalPriceSet {{ {_SHOP_MONEY} }}
  subtotalPriceSet {{ {_SHOP_MONEY} }}
  totalTaxSet {{ {_SHOP_MONEY} }}
  totalDiscountsSet {{ {_SHOP_MONEY} }}
  customer {{ legacyResourceId email }}
  lineItems(first: {INLINE_LINE_ITEMS}) {{
    pageInfo {{ hasNextPage endCursor }} nodes {{ {LINE_ITEM_FIELDS} }}
  }}
  refunds(first: {INLINE_REFUNDS}) {{ {REFUND_FIELDS} }}
"""

#: What the daily store metrics need of an order (a cheaper query than the store sync's).
ORDER_METRIC_FIELDS = f"""
  id legacyResourceId createdAt processedAt cancelledAt test displayFinancialStatus currencyCode
  totalPriceSet {{ {_SHOP_MONEY} }}
  refunds(first: {INLINE_REFUNDS}) {{ {REFUND_FIELDS} }}
"""

PRODUCT_FIELDS = "id legacyResourceId title handle vendor productType status tags createdAt updatedAt"

CUSTOMER_FIELDS = """
  id legacyResourceId email firstName lastName state numberOfOrders createdAt updatedAt
  amountSpent { amount currencyCode }
"""


def _list_query(name: str, connection: str, fields: str, sort_type: str) -> str:
    return (
        f"query {name}($first: Int!, $after: String, $query: String, $sortKey: {sort_type}) {{ "
        f"{connection}(first: $first, after: $after, query: $query, sortKey: $sortKey) {{ "
        f"pageInfo {{ hasNextPage endCursor }} nodes {{ {fields} }} }} }}"
    )


LIST = {
    "orders": _list_query("Orders", "orders", ORDER_FIELDS, "OrderSortKeys"),
    "order_metrics": _list_query("OrderMetrics", "orders", ORDER_METRIC_FIELDS, "OrderSortKeys"),
    "products": _list_query("Products", "products", PRODUCT_FIELDS, "ProductSortKeys"),
    "customers": _list_query("Customers", "customers", CUSTOMER_FIELDS, "CustomerSortKeys"),
}

#: Only the ids, 250 a page (2 + 250 x 1 points): the deletion reconciliation lists what still exists.
IDS = {
    resource: (
        f"query Ids($first: Int!, $after: String, $query: String) {{ "
        f"{resource}(first: $first, after: $after, query: $query) {{ "
        "pageInfo { hasNextPage endCursor } nodes { legacyResourceId } } }"
    )
    for resource in ("orders", "products", "customers")
}

ORDER_REFUNDS = f"query OrderRefunds($id: ID!) {{ order(id: $id) {{ refunds {{ {REFUND_FIELDS} }} }} }}"

REFUND_TRANSACTIONS = (
    "query RefundTransactions($id: ID!, $after: String) { refund(id: $id) { "
    "transactions(first: 100, after: $after) { pageInfo { hasNextPage endCursor } "
    f"nodes {{ {TRANSACTION_FIELDS} }} }} }} }}"
)

ORDER_LINE_ITEMS = (
    "query OrderLineItems($id: ID!, $after: String) { order(id: $id) { "
    "lineItems(first: 100, after: $after) { pageInfo { hasNextPage endCursor } "
    f"nodes {{ {LINE_ITEM_FIELDS} }} }} }} }}"
)


# Bulk queries (https://shopify.dev/docs/api/usage/bulk-operations/queries): connections without
# `first`; no connection inside a list field, so refund money comes from the order's `transactions`
# list (kind REFUND) instead of `refunds { transactions }`.
_BULK_ORDER_METRIC_FIELDS = f"""
  id legacyResourceId createdAt processedAt cancelledAt test displayFinancialStatus currencyCode
  totalPriceSet {{ {_SHOP_MONEY} }}
  transactions {{ {TRANSACTION_FIELDS} }}
"""
_BULK_ORDER_FIELDS = ORDER_FIELDS.replace(
    f"lineItems(first: {INLINE_LINE_ITEMS}) {{\n    pageInfo {{ hasNextPage endCursor }} nodes",
    "lineItems {\n    nodes",
).replace(
    f"refunds(first: {INLINE_REFUNDS}) {{ {REFUND_FIELDS} }}", f"transactions {{ {TRANSACTION_FIELDS} }}"
)
_BULK_FIELDS = {"orders": _BULK_ORDER_FIELDS, "order_metrics": _BULK_ORDER_METRIC_FIELDS}


def bulk_orders(resource: str, search: str) -> str:
    """The bulk query of ``resource`` (``orders`` or ``order_metrics``) matching ``search``."""
    return f"{{ orders(query: {json.dumps(search)}) {{ nodes {{ {_BULK_FIELDS[resource]} }} }} }}"


def legacy_id(value: Any) -> Any:
    """A GID's numeric tail (``gid://shopify/Order/123`` -> ``"123"``); other values unchanged."""
    if isinstance(value, str) and value.startswith("gid://"):
        return value.rsplit("/", 1)[-1].split("?", 1)[0]
    return value


def _id(node: dict[str, Any]) -> Any:
    return node.get("legacyResourceId") or legacy_id(node.get("id"))


def shop_money(bag: Any) -> Any:
    """The amount in the shop's currency of a ``*Set`` money bag (None when absent)."""
    if not isinstance(bag, dict):
        return None
    money = bag.get("shopMoney")
    return money.get("amount") if isinstance(money, dict) else None


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _tags(value: Any) -> Any:
    return ", ".join(str(t) for t in value) if isinstance(value, list) else value


def _nodes(connection: Any) -> list[Any]:
    if isinstance(connection, dict):
        nodes = connection.get("nodes")
        return nodes if isinstance(nodes, list) else []
    return connection if isinstance(connection, list) else []


def _transaction(tx: Any) -> Any:
    if not isinstance(tx, dict):
        return tx
    bag = tx.get("amountSet") or {}
    presentment = bag.get("presentmentMoney") if isinstance(bag, dict) else None
    return {
        "id": legacy_id(tx.get("id")),
        "kind": _lower(tx.get("kind")),
        "status": _lower(tx.get("status")),
        "processed_at": tx.get("processedAt"),
        "amount": shop_money(bag),  # the shop's currency
        "presentment_amount": presentment.get("amount") if isinstance(presentment, dict) else None,
        "presentment_currency": presentment.get("currencyCode") if isinstance(presentment, dict) else None,
    }


def order_to_rest(node: Any) -> Any:
    """An Orders node as the REST/webhook order that :func:`mapping.order_row` reads."""
    if not isinstance(node, dict):
        return node
    customer = node.get("customer")
    refunds = node.get("refunds")
    if isinstance(node.get("transactions"), list):  # a bulk order: its refunds' money, one per transaction
        refunds = [
            {"id": None, "createdAt": tx.get("processedAt"), "transactions": {"nodes": [tx]}}
            for tx in node["transactions"]
            if isinstance(tx, dict) and str(tx.get("kind")).upper() == "REFUND"
        ]
    return {
        "id": _id(node),
        "admin_graphql_api_id": node.get("id"),
        "name": node.get("name"),
        "email": node.get("email"),
        "created_at": node.get("createdAt"),
        "updated_at": node.get("updatedAt"),
        "processed_at": node.get("processedAt"),
        "cancelled_at": node.get("cancelledAt"),
        "closed_at": node.get("closedAt"),
        "test": node.get("test"),
        "tags": _tags(node.get("tags")),
        "currency": node.get("currencyCode"),
        "presentment_currency": node.get("presentmentCurrencyCode"),
        "financial_status": _lower(node.get("displayFinancialStatus")),
        "fulfillment_status": _lower(node.get("displayFulfillmentStatus")),
        "source_name": node.get("sourceName"),
        "total_price": shop_money(node.get("totalPriceSet")),
        "subtotal_price": shop_money(node.get("subtotalPriceSet")),
        "total_tax": shop_money(node.get("totalTaxSet")),
        "total_discounts": shop_money(node.get("totalDiscountsSet")),
        "customer": {"id": _id(customer), "email": customer.get("email")}
        if isinstance(customer, dict)
        else None,
        "line_items": [
            {
                "id": legacy_id(li.get("id")),
                "product_id": _id(li["product"]) if isinstance(li.get("product"), dict) else None,
                "variant_id": _id(li["variant"]) if isinstance(li.get("variant"), dict) else None,
                "title": li.get("title"),
                "sku": li.get("sku"),
                "quantity": li.get("quantity"),
                "price": shop_money(li.get("originalUnitPriceSet")),
                "total_discount": shop_money(li.get("totalDiscountSet")),
            }
            if isinstance(li, dict)
            else li
            for li in _nodes(node.get("lineItems"))
        ],
        "refunds": [
            {
                "id": _id(r),
                "created_at": r.get("createdAt"),
                "transactions": [_transaction(tx) for tx in _nodes(r.get("transactions"))],
            }
            if isinstance(r, dict)
            else r
            for r in (refunds if isinstance(refunds, list) else [])
        ],
    }


def product_to_rest(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    return {
        "id": _id(node),
        "title": node.get("title"),
        "handle": node.get("handle"),
        "vendor": node.get("vendor"),
        "product_type": node.get("productType"),
        "status": _lower(node.get("status")),
        "tags": _tags(node.get("tags")),
        "created_at": node.get("createdAt"),
        "updated_at": node.get("updatedAt"),
    }


def customer_to_rest(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    spent: dict[str, Any] = node["amountSpent"] if isinstance(node.get("amountSpent"), dict) else {}
    return {
        "id": _id(node),
        "email": node.get("email"),
        "first_name": node.get("firstName"),
        "last_name": node.get("lastName"),
        "state": _lower(node.get("state")),
        "orders_count": node.get("numberOfOrders"),
        "total_spent": spent.get("amount"),
        "currency": spent.get("currencyCode"),
        "created_at": node.get("createdAt"),
        "updated_at": node.get("updatedAt"),
    }


TO_REST = {
    "orders": order_to_rest,
    "order_metrics": order_to_rest,
    "products": product_to_rest,
    "customers": customer_to_rest,
}
