"""The GraphQL Admin API (``POST /admin/api/{version}/graphql.json``) for the queries metricx sends.

Not a general GraphQL engine: a small parser reads the selection set (fields, their arguments,
nesting; variables resolved), checks every field against :data:`SCHEMA` (an unknown field is an
``errors[]`` answer with ``undefinedField``, as Shopify's validation gives), computes the requested
cost the way Shopify documents it (an object costs 1, a scalar 0, a connection or list ``2 + first``
times its node's cost; https://shopify.dev/docs/api/usage/limits#cost-calculation), refuses a query
above the single-query maximum (``MAX_COST_EXCEEDED``), and throttles with a per-shop bucket of
points (``THROTTLED`` inside HTTP 200). Every answer carries ``extensions.cost.throttleStatus``.

The data come from the shops' REST-shaped rows (:mod:`.data`), rendered as GraphQL nodes (GIDs,
``legacyResourceId``, ``*Set`` money bags with ``shopMoney`` and ``presentmentMoney``, upper-case
enums, tag lists) and projected to the fields the query asked for.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

Node = dict[str, Any]

#: type -> field -> type of the field (None: a scalar or enum). Lists and connections are marked
#: in :data:`PAGED`.
SCHEMA: dict[str, dict[str, str | None]] = {
    "QueryRoot": {
        "shop": "Shop",
        "orders": "OrderConnection",
        "products": "ProductConnection",
        "customers": "CustomerConnection",
        "order": "Order",
        "refund": "Refund",
        "currentAppInstallation": "AppInstallation",
        "node": "BulkOperation",
        "currentBulkOperation": "BulkOperation",
    },
    "BulkOperation": dict.fromkeys(
        (
            "id status type errorCode createdAt completedAt objectCount rootObjectCount fileSize url "
            "partialDataUrl query"
        ).split()
    ),
    "Shop": {"id": None, "name": None, "ianaTimezone": None, "currencyCode": None, "myshopifyDomain": None},
    "AppInstallation": {"accessScopes": "AccessScope"},
    "AccessScope": {"handle": None},
    "PageInfo": {"hasNextPage": None, "endCursor": None, "hasPreviousPage": None, "startCursor": None},
    "OrderConnection": {"pageInfo": "PageInfo", "nodes": "Order"},
    "ProductConnection": {"pageInfo": "PageInfo", "nodes": "Product"},
    "CustomerConnection": {"pageInfo": "PageInfo", "nodes": "Customer"},
    "LineItemConnection": {"pageInfo": "PageInfo", "nodes": "LineItem"},
    "OrderTransactionConnection": {"pageInfo": "PageInfo", "nodes": "OrderTransaction"},
    "MoneyBag": {"shopMoney": "MoneyV2", "presentmentMoney": "MoneyV2"},
    "MoneyV2": {"amount": None, "currencyCode": None},
    "Order": {
        **dict.fromkeys(
            (
                "id legacyResourceId name email createdAt updatedAt processedAt cancelledAt closedAt "
                "cancelReason test tags currencyCode presentmentCurrencyCode displayFinancialStatus "
                "displayFulfillmentStatus sourceName"
            ).split()
        ),
        "totalPriceSet": "MoneyBag",
        "subtotalPriceSet": "MoneyBag",
        "totalTaxSet": "MoneyBag",
        "totalDiscountsSet": "MoneyBag",
        "totalRefundedSet": "MoneyBag",
        "customer": "Customer",
        "lineItems": "LineItemConnection",
        "refunds": "Refund",
        "transactions": "OrderTransaction",
    },
    "LineItem": {
        **dict.fromkeys("id title sku quantity".split()),
        "originalUnitPriceSet": "MoneyBag",
        "totalDiscountSet": "MoneyBag",
        "product": "Product",
        "variant": "ProductVariant",
    },
    "ProductVariant": {"id": None, "legacyResourceId": None},
    "Refund": {
        **dict.fromkeys("id legacyResourceId createdAt note".split()),
        "totalRefundedSet": "MoneyBag",
        "transactions": "OrderTransactionConnection",
    },
    "OrderTransaction": {
        **dict.fromkeys("id kind status processedAt gateway".split()),
        "amountSet": "MoneyBag",
    },
    "Product": dict.fromkeys(
        "id legacyResourceId title handle vendor productType status tags createdAt updatedAt".split()
    ),
    "Customer": {
        **dict.fromkeys(
            "id legacyResourceId email firstName lastName state numberOfOrders createdAt updatedAt".split()
        ),
        "amountSpent": "MoneyV2",
    },
}
#: Fields that are connections (``first``/``after``, ``pageInfo``/``nodes``) or lists (``first``).
CONNECTIONS = {"orders", "products", "customers", "lineItems"}
LISTS = {"refunds", "accessScopes", "transactions"}
MAX_COST = 1000
MAX_FIRST = 250

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\.\.\.|[A-Za-z_]\w*|[{}():,!$\[\]=]|-?\d+(?:\.\d+)?|#[^\n]*')


class GraphQLError(Exception):
    """A request Shopify rejects before running it: ``errors[]`` and no ``data``."""

    def __init__(self, message: str, code: str | None = None, **extensions: Any) -> None:
        super().__init__(message)
        self.body: Node = {"message": message}
        if code or extensions:
            self.body["extensions"] = {**({"code": code} if code else {}), **extensions}


@dataclass
class Selection:
    """One field of a selection set: its arguments and its own selection set."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    fields: list[Selection] = field(default_factory=list)


def _tokens(query: str) -> list[str]:
    return [t for t in _TOKEN.findall(query) if not t.startswith("#") and t != ","]


class _Parser:
    def __init__(self, query: str, variables: dict[str, Any]) -> None:
        self.toks = _tokens(query)
        self.pos = 0
        self.variables = variables

    def peek(self) -> str | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise GraphQLError(f"Parse error on {tok or 'end of input'!r} (expected {expected or 'more'})")
        self.pos += 1
        return tok

    def document(self) -> tuple[str, str | None, list[Selection]]:
        kind = "query"
        name = None
        if self.peek() in ("query", "mutation"):
            kind = self.take()
            if self.peek() not in ("{", "("):
                name = self.take()
            if self.peek() == "(":  # variable definitions: skipped (values come from `variables`)
                depth = 0
                while True:
                    tok = self.take()
                    depth += {"(": 1, ")": -1}.get(tok, 0)
                    if depth == 0:
                        break
        return kind, name, self.selection_set()

    def selection_set(self) -> list[Selection]:
        self.take("{")
        out: list[Selection] = []
        while self.peek() != "}":
            name = self.take()
            if name == "...":  # an inline fragment (``... on BulkOperation { }``): its fields, in place
                self.take("on")
                self.take()
                out.extend(self.selection_set())
                continue
            if not re.match(r"[A-Za-z_]", name):
                raise GraphQLError(f"Parse error on {name!r}")
            sel = Selection(name)
            if self.peek() == "(":
                sel.args = self.arguments()
            if self.peek() == "{":
                sel.fields = self.selection_set()
            out.append(sel)
        self.take("}")
        return out

    def arguments(self) -> dict[str, Any]:
        self.take("(")
        args: dict[str, Any] = {}
        while self.peek() != ")":
            key = self.take()
            self.take(":")
            args[key] = self.value()
        self.take(")")
        return args

    def value(self) -> Any:
        tok = self.take()
        if tok == "$":
            return self.variables.get(self.take())
        if tok.startswith('"'):
            return json.loads(tok)
        if re.fullmatch(r"-?\d+", tok):
            return int(tok)
        return {"true": True, "false": False, "null": None}.get(tok, tok)  # enums stay names


def parse(query: str, variables: dict[str, Any] | None = None) -> tuple[str, str | None, list[Selection]]:
    """(``query`` | ``mutation``, operation name, top-level selections); GraphQLError when unreadable."""
    parser = _Parser(query, variables or {})
    doc = parser.document()
    if parser.peek() is not None:
        raise GraphQLError(f"Parse error on {parser.peek()!r}: one operation per request")
    return doc


def validate(selections: list[Selection], type_name: str = "QueryRoot", *, bulk: bool = False) -> None:
    """Every field exists on its type, and objects have a selection set: else Shopify's errors.
    ``bulk``: a bulk operation's query, whose connections take no ``first``."""
    fields = SCHEMA[type_name]
    for sel in selections:
        if sel.name not in fields:
            raise GraphQLError(
                f"Field '{sel.name}' doesn't exist on type '{type_name}'",
                "undefinedField",
                typeName=type_name,
                fieldName=sel.name,
            )
        child = fields[sel.name]
        if child is None and sel.fields:
            raise GraphQLError(
                f"Selections can't be made on scalars (field '{sel.name}')", "selectionMismatch"
            )
        if child is not None and not sel.fields:
            raise GraphQLError(
                f"Field must have selections (field '{sel.name}' returns {child} but has no selections.)",
                "selectionMismatch",
            )
        if child is not None:
            validate(sel.fields, child, bulk=bulk)
        first = sel.args.get("first")
        if (sel.name in CONNECTIONS or sel.name in LISTS) and first is not None:
            if not isinstance(first, int) or not 0 <= first <= MAX_FIRST:
                raise GraphQLError(
                    f"The 'first' argument of '{sel.name}' must be between 0 and {MAX_FIRST}",
                    "argumentLiteralsIncompatible",
                )
        if sel.name in CONNECTIONS and first is None and "last" not in sel.args and not bulk:
            raise GraphQLError("you must provide one of first or last", "argumentLiteralsIncompatible")


def cost(selections: list[Selection], type_name: str = "QueryRoot") -> int:
    """Shopify's requested cost: objects 1, scalars 0, connections 2 + first x node cost (a plain
    list costs its object once, as Shopify's table of field costs has no multiplier for lists)."""
    total = 0
    for sel in selections:
        child = SCHEMA[type_name][sel.name]
        if child is None:
            continue
        if sel.name in CONNECTIONS or child.endswith("Connection"):
            first = int(sel.args.get("first") or (10 if sel.name in LISTS else 0))
            node_type = SCHEMA[child].get("nodes") if child.endswith("Connection") else child
            inner = next((s.fields for s in sel.fields if s.name == "nodes"), sel.fields)
            total += 2 + first * (1 + cost(inner, node_type or child))
        else:
            total += 1 + cost(sel.fields, child)
    return total


def project(value: Any, selections: list[Selection]) -> Any:
    """Keep only the requested fields of a rendered node (lists element-wise)."""
    if isinstance(value, list):
        return [project(v, selections) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for sel in selections:
        item = value.get(sel.name)
        out[sel.name] = project(item, sel.fields) if sel.fields and item is not None else item
    return out


@dataclass
class PointBucket:
    """The shop's bucket of query-cost points: ``maximum`` points, restored at ``restore_rate`` per second."""

    maximum: float = 2000.0
    restore_rate: float = 100.0
    available: float = 2000.0
    at: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _restore(self) -> None:
        now = time.monotonic()
        self.available = min(self.maximum, self.available + (now - self.at) * self.restore_rate)
        self.at = now

    def take(self, requested: int) -> bool:
        """Reserve ``requested`` points; False (nothing taken) when the bucket has fewer."""
        with self.lock:
            self._restore()
            if requested > self.available:
                return False
            self.available -= requested
            return True

    def refund(self, points: float) -> None:
        with self.lock:
            self.available = min(self.maximum, self.available + points)

    def status(self) -> Node:
        with self.lock:
            self._restore()
            return {
                "maximumAvailable": self.maximum,
                "currentlyAvailable": int(self.available),
                "restoreRate": self.restore_rate,
            }


# --- rendering REST-shaped simulator rows as GraphQL nodes -------------------------------------


def gid(kind: str, number: int) -> str:
    return f"gid://shopify/{kind}/{number}"


def money_bag(amount: Any, shop_currency: str, presentment: tuple[Any, str] | None = None) -> Node | None:
    if amount is None:
        return None
    shop_money = {"amount": str(Decimal(str(amount))), "currencyCode": shop_currency}
    if presentment is None:
        return {"shopMoney": shop_money, "presentmentMoney": dict(shop_money)}
    return {
        "shopMoney": shop_money,
        "presentmentMoney": {"amount": str(Decimal(str(presentment[0]))), "currencyCode": presentment[1]},
    }


def _tags(value: Any) -> list[str]:
    return [t.strip() for t in str(value or "").split(",") if t.strip()]


def _utc(stamp: str | None) -> str | None:
    """GraphQL answers DateTime in UTC with ``Z``."""
    if not stamp:
        return None
    return datetime.fromisoformat(stamp).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render_product(row: Node) -> Node:
    return {
        "id": gid("Product", row["id"]),
        "legacyResourceId": str(row["id"]),
        "title": row.get("title"),
        "handle": row.get("handle"),
        "vendor": row.get("vendor"),
        "productType": row.get("product_type"),
        "status": str(row.get("status") or "active").upper(),
        "tags": _tags(row.get("tags")),
        "createdAt": _utc(row.get("created_at")),
        "updatedAt": _utc(row.get("updated_at")),
    }


def render_customer(row: Node, currency: str) -> Node:
    return {
        "id": gid("Customer", row["id"]),
        "legacyResourceId": str(row["id"]),
        "email": row.get("email"),
        "firstName": row.get("first_name"),
        "lastName": row.get("last_name"),
        "state": str(row.get("state") or "disabled").upper(),
        "numberOfOrders": str(row.get("orders_count") or 0),
        "amountSpent": {"amount": str(Decimal(str(row.get("total_spent") or "0"))), "currencyCode": currency},
        "createdAt": _utc(row.get("created_at")),
        "updatedAt": _utc(row.get("updated_at")),
    }


def _transaction(tx: Node, currency: str) -> Node:
    presentment = (tx["amount"], tx.get("currency") or currency)
    shop_amount = tx.get("shop_amount", tx["amount"])  # the REST amount is the presentment one
    return {
        "id": gid("OrderTransaction", tx["id"]),
        "kind": str(tx["kind"]).upper(),
        "status": str(tx.get("status") or "success").upper(),
        "processedAt": _utc(tx.get("processed_at") or tx.get("created_at")),
        "gateway": tx.get("gateway", "bogus"),
        "amountSet": money_bag(shop_amount, currency, presentment),
    }


def page_of(items: list[Any], first: int | None, after: str | None) -> tuple[list[Any], Node]:
    """``first`` items after the cursor ``after`` (an index), and the page's ``pageInfo``."""
    start = int((decode_cursor(after) or [0])[0]) if after else 0
    page = items[start:] if first is None else items[start : start + first]
    info = {
        "hasNextPage": start + len(page) < len(items),
        "endCursor": encode_cursor([start + len(page)]) if page else None,
    }
    return page, info


def render_refund(
    refund: Node, currency: str, tx_first: int | None = None, tx_after: str | None = None
) -> Node:
    """A refund node; its ``transactions`` connection paged from ``tx_after`` by ``tx_first``."""
    txs = [_transaction(tx, currency) for tx in refund.get("transactions") or []]
    page, info = page_of(txs, tx_first, tx_after)
    return {
        "id": gid("Refund", refund["id"]),
        "legacyResourceId": str(refund["id"]),
        "createdAt": _utc(refund.get("created_at")),
        "note": refund.get("note"),
        "totalRefundedSet": money_bag(
            sum(
                (Decimal(str(t["amountSet"]["shopMoney"]["amount"])) for t in txs if t["kind"] == "REFUND"),
                Decimal(0),
            ),
            currency,
        ),
        "transactions": {"pageInfo": info, "nodes": page},
    }


@dataclass(frozen=True)
class OrderPaging:
    """How a query pages an order's nested fields: ``lineItems(first, after)``, ``refunds(first)``
    (a list: truncated, no cursor) and each refund's ``transactions(first)`` connection."""

    line_first: int = 0
    line_after: str | None = None
    refunds_first: int | None = None
    tx_first: int | None = None


def render_order(row: Node, currency: str, paging: OrderPaging | None = None) -> Node:
    """An order node with its nested fields paged as ``paging`` says."""
    paging = paging or OrderPaging()
    presentment = row.get("presentment_currency") or currency
    page, line_info = page_of(row.get("line_items") or [], paging.line_first, paging.line_after)
    all_refunds = row.get("refunds") or []
    kept = all_refunds if paging.refunds_first is None else all_refunds[: paging.refunds_first]
    refunds = [render_refund(r, currency, paging.tx_first) for r in kept]
    # Order.transactions (a list): every transaction of the order, its refunds' among them
    transactions = [_transaction(tx, currency) for r in all_refunds for tx in r.get("transactions") or []]
    customer = row.get("customer")
    fulfillment = {"fulfilled": "FULFILLED", "partial": "PARTIALLY_FULFILLED"}.get(
        str(row.get("fulfillment_status")), "UNFULFILLED"
    )
    return {
        "id": gid("Order", row["id"]),
        "legacyResourceId": str(row["id"]),
        "name": row.get("name"),
        "email": row.get("email"),
        "createdAt": _utc(row.get("created_at")),
        "updatedAt": _utc(row.get("updated_at")),
        "processedAt": _utc(row.get("processed_at")),
        "cancelledAt": _utc(row.get("cancelled_at")),
        "closedAt": _utc(row.get("closed_at")),
        "cancelReason": "CUSTOMER" if row.get("cancelled_at") else None,
        "test": bool(row.get("test")),
        "tags": _tags(row.get("tags")),
        "currencyCode": currency,
        "presentmentCurrencyCode": presentment,
        "displayFinancialStatus": str(row.get("financial_status") or "pending").upper(),
        "displayFulfillmentStatus": fulfillment,
        "sourceName": row.get("source_name"),
        "totalPriceSet": money_bag(row.get("total_price"), currency),
        "subtotalPriceSet": money_bag(row.get("subtotal_price"), currency),
        "totalTaxSet": money_bag(row.get("total_tax"), currency),
        "totalDiscountsSet": money_bag(row.get("total_discounts"), currency),
        "totalRefundedSet": money_bag(
            sum((Decimal(str(r["totalRefundedSet"]["shopMoney"]["amount"])) for r in refunds), Decimal(0)),
            currency,
        ),
        "customer": None
        if not customer
        else {
            "id": gid("Customer", customer["id"]),
            "legacyResourceId": str(customer["id"]),
            "email": customer.get("email"),
        },
        "lineItems": {
            "pageInfo": line_info,
            "nodes": [
                {
                    "id": gid("LineItem", li["id"]),
                    "title": li.get("title"),
                    "sku": li.get("sku"),
                    "quantity": li.get("quantity"),
                    "originalUnitPriceSet": money_bag(li.get("price"), currency),
                    "totalDiscountSet": money_bag(li.get("total_discount") or "0", currency),
                    "product": None
                    if li.get("product_id") is None
                    else {"id": gid("Product", li["product_id"]), "legacyResourceId": str(li["product_id"])},
                    "variant": None
                    if li.get("variant_id") is None
                    else {
                        "id": gid("ProductVariant", li["variant_id"]),
                        "legacyResourceId": str(li["variant_id"]),
                    },
                }
                for li in page
            ],
        },
        "refunds": refunds,
        "transactions": transactions,
    }


def encode_cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(token: str) -> list[Any] | None:
    try:
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, list) else None


_TERM = re.compile(r"(\w+):(>=|<=|>|<)?'?([^'\s)]+)'?")


def search_filter(query: str | None) -> list[tuple[str, str, str]]:
    """Shopify's search syntax as far as metricx uses it: ``field:>=value`` terms joined by AND."""
    terms = []
    for name, op, value in _TERM.findall(query or ""):
        terms.append((name, op or "=", value))
    return terms


def _stamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def matches(row: Node, terms: list[tuple[str, str, str]]) -> bool:
    for name, op, value in terms:
        if name not in ("updated_at", "created_at", "processed_at"):
            continue  # other terms are not modelled: they match
        stamp, bound = _stamp(row.get(name) or row["created_at"]), _stamp(value)
        ok = {
            ">=": stamp >= bound,
            ">": stamp > bound,
            "<=": stamp <= bound,
            "<": stamp < bound,
            "=": stamp == bound,
        }[op]
        if not ok:
            return False
    return True


SORT_FIELDS = {
    "UPDATED_AT": "updated_at",
    "CREATED_AT": "created_at",
    "PROCESSED_AT": "processed_at",
    "ID": None,
}


def sort_key(row: Node, sort: str) -> list[Any]:
    column = SORT_FIELDS.get(sort)
    if column is None:
        return [row["id"]]
    return [_stamp(row.get(column) or row["created_at"]).timestamp(), row["id"]]
