"""Bulk query operations in the simulator: ``bulkOperationRunQuery``, polling, the JSONL file.

Lifecycle (https://shopify.dev/docs/api/admin-graphql/latest/objects/BulkOperation): the mutation
creates the operation ``CREATED``; each poll (``node(id:)`` or ``currentBulkOperation``) moves it
on, ``RUNNING`` then ``COMPLETED`` with a ``url`` that expires ``URL_TTL_S`` of simulated time
after the poll that handed it out (poll again for a fresh one). One query operation per shop at a
time: another ``bulkOperationRunQuery`` meanwhile is a ``userErrors`` entry
``OPERATION_IN_PROGRESS``. The file is served from ``/_sim/bulk/{n}.jsonl``: one order per line,
each of its line items on a line of its own with ``__parentId``, right after it with
``groupObjects: true``, else after all the orders (the default since 2026-01). The inner query
reads ``orders(query:) { nodes { ... lineItems { nodes { ... } } } }``; a connection inside a list
field (``refunds { transactions { ... } }``) is refused as Shopify refuses it, so an order's refund
money comes with its ``transactions`` list.

The fault ``bulk_failed`` (``error_code``, default ``INTERNAL_SERVER_ERROR``; ``partial_orders``:
with it the failed operation has a ``partialDataUrl`` whose file holds that many whole orders and
then an order cut off before its line items) makes the next operation of the shop fail;
``bulk_url_expired`` answers the next download as an expired URL does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from metricx_shopify.simulator import graphql as gql
from metricx_shopify.simulator.state import SimState

URL_TTL_S = 3600
ACTIVE = ("CREATED", "RUNNING")
LIST_CONNECTION = "Queries that contain a connection field within a list field are not currently supported."


def _connection_in_list(selections: list[gql.Selection], type_name: str, in_list: bool = False) -> bool:
    fields = gql.SCHEMA[type_name]
    for sel in selections:
        child = fields.get(sel.name)
        if child is None:
            continue
        connection = child.endswith("Connection") or sel.name in gql.CONNECTIONS
        if connection and in_list:
            return True
        if _connection_in_list(sel.fields, child, in_list or sel.name in gql.LISTS):
            return True
    return False


def run_query(state: SimState, domain: str, sel: gql.Selection, base_url: str) -> dict[str, Any]:
    """The ``bulkOperationRunQuery`` payload (called under the state's lock)."""
    ops = state.bulk_ops
    errors: list[dict[str, Any]] = []
    op: dict[str, Any] | None = None
    busy = next((o for o in ops.values() if o["domain"] == domain and o["status"] in ACTIVE), None)
    try:
        _, _, inner = gql.parse(str(sel.args.get("query") or ""), {})
        gql.validate(inner, bulk=True)
        if [s.name for s in inner] != ["orders"]:
            raise gql.GraphQLError("the simulator's bulk queries read orders only")
        if _connection_in_list(inner, "QueryRoot"):
            raise gql.GraphQLError(LIST_CONNECTION)
    except gql.GraphQLError as exc:
        errors.append({"field": ["query"], "message": exc.body.get("message", str(exc)), "code": "INVALID"})
        inner = []
    if busy is not None and not errors:
        errors.append(
            {
                "field": ["query"],
                "message": "A bulk query operation for this app and shop is already in progress: "
                f"{busy['id']}.",
                "code": "OPERATION_IN_PROGRESS",
            }
        )
    if not errors:
        number = len(ops) + 1
        op = {
            "number": number,
            "id": gql.gid("BulkOperation", number),
            "domain": domain,
            "status": "CREATED",
            "polls": 0,
            "inner": inner[0],
            "base": base_url.rstrip("/"),
            "createdAt": state.now().isoformat().replace("+00:00", "Z"),
        }
        fault = state.take_fault("bulk_failed", domain, "/bulk", "POST")
        if fault is not None:
            op["fail"] = dict(fault.params)
        op["grouped"] = sel.args.get("groupObjects") is True
        op["query"] = str(sel.args.get("query") or "")
        ops[number] = op
        state.stats["bulk_operations"] += 1
    payload = {"bulkOperation": view(state, op) if op else None, "userErrors": errors}
    projected: dict[str, Any] = gql.project(payload, sel.fields)
    return projected


def poll(state: SimState, domain: str, sel: gql.Selection) -> dict[str, Any] | None:
    """``node(id:)`` / ``currentBulkOperation``: the operation, one step further along."""
    ops = state.bulk_ops
    if sel.name == "node":
        number = str(sel.args.get("id", "")).rsplit("/", 1)[-1]
        op = ops.get(int(number)) if number.isdigit() else None
    else:
        mine = [o for o in ops.values() if o["domain"] == domain]
        op = mine[-1] if mine else None
    if op is None or op["domain"] != domain:
        return None
    op["polls"] += 1
    if op["status"] == "CREATED":
        op["status"] = "RUNNING"
    elif op["status"] == "RUNNING":
        op["status"] = "FAILED" if "fail" in op else "COMPLETED"
    polled: dict[str, Any] = gql.project(view(state, op), sel.fields)
    return polled


def view(state: SimState, op: dict[str, Any]) -> dict[str, Any]:
    done, failed = op["status"] == "COMPLETED", op["status"] == "FAILED"
    fail = op.get("fail") or {}
    expires = int((state.now() + timedelta(seconds=URL_TTL_S)).timestamp())
    count = len(_rows(state, op)) if done else 0
    file = f"{op['base']}/_sim/bulk/{op['number']}.jsonl?expires={expires}"
    partial = failed and fail.get("partial_orders") is not None
    return {
        "id": op["id"],
        "status": op["status"],
        "type": "QUERY",
        "errorCode": str(fail.get("error_code") or "INTERNAL_SERVER_ERROR") if failed else None,
        "createdAt": op["createdAt"],
        "completedAt": state.now().isoformat().replace("+00:00", "Z") if done else None,
        "objectCount": str(count),
        "rootObjectCount": str(count),
        "fileSize": None,
        "url": file if done and count else None,  # no objects: no file
        "partialDataUrl": file if partial else None,
        "query": op.get("query", ""),
    }


def _rows(state: SimState, op: dict[str, Any]) -> list[dict[str, Any]]:
    shop = state.shops[op["domain"]]
    terms = gql.search_filter(op["inner"].args.get("query"))
    rows = [
        r for r in shop.orders.values() if gql.matches(r, terms) and state.visible(op["domain"], "orders", r)
    ]
    return sorted(rows, key=lambda r: r["id"])


def _lines(state: SimState, op: dict[str, Any]) -> Iterator[bytes]:
    """The file: whole orders (grouped or not); a failed operation's partial file ends with an
    order cut off before its line items."""
    shop = state.shops[op["domain"]]
    nodes = next((s for s in op["inner"].fields if s.name == "nodes"), None)
    fields = nodes.fields if nodes is not None else []
    own = [f for f in fields if f.name != "lineItems"]
    items = next((f for f in fields if f.name == "lineItems"), None)
    item_fields: list[gql.Selection] = (
        next((s.fields for s in items.fields if s.name == "nodes"), []) if items else []
    )
    rows = _rows(state, op)
    cut = (op.get("fail") or {}).get("partial_orders")
    if cut is not None:
        rows = rows[: int(cut) + 1]
    later: list[bytes] = []
    for number, row in enumerate(rows):
        node = gql.render_order(row, shop.spec.currency, gql.OrderPaging(line_first=10**6))
        yield (json.dumps(gql.project(node, own)) + "\n").encode()
        if items is None or (cut is not None and number == int(cut)):
            continue
        for line in (node.get("lineItems") or {}).get("nodes") or []:
            child = (json.dumps({**gql.project(line, item_fields), "__parentId": node["id"]}) + "\n").encode()
            if op.get("grouped"):
                yield child
            else:
                later.append(child)
    yield from later


async def download(request: Request) -> Response:
    """The operation's JSONL (streamed); 403 once the URL expired, as a signed storage URL does."""
    state: SimState = request.app.state.sim
    ops = state.bulk_ops
    op = ops.get(int(request.path_params["number"]))
    expires = request.query_params.get("expires", "0")
    partial = (
        op is not None
        and op["status"] == "FAILED"
        and (op.get("fail") or {}).get("partial_orders") is not None
    )
    if op is None or not (op["status"] == "COMPLETED" or partial):
        return Response("<Error><Code>NoSuchKey</Code></Error>", 404, media_type="application/xml")
    expired = state.take_fault("bulk_url_expired", op["domain"], "/bulk", "GET")
    if expired is not None or not expires.isdigit() or int(expires) < state.now().timestamp():
        return Response(
            "<Error><Code>ExpiredToken</Code><Message>The provided token has expired.</Message></Error>",
            403,
            media_type="application/xml",
        )
    state.stats["bulk_downloads"] += 1
    return StreamingResponse(_lines(state, op), media_type="application/jsonl")
