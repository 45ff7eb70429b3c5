"""Bulk query operations in the simulator: ``bulkOperationRunQuery``, polling, the JSONL file.

Lifecycle (https://shopify.dev/docs/api/admin-graphql/latest/objects/BulkOperation): the mutation
creates the operation ``CREATED``; each poll (``node(id:)`` or ``currentBulkOperation``) moves it
on, ``RUNNING`` then ``COMPLETED`` with a ``url`` that expires ``URL_TTL_S`` of simulated time
after the poll that handed it out (poll again for a fresh one). One query operation per shop at a
time: another ``bulkOperationRunQuery`` meanwhile is a ``userErrors`` entry
``OPERATION_IN_PROGRESS``. The file is served from ``/_sim/bulk/{n}.jsonl``: one order per line,
each of its line items on a line of its own after it with ``__parentId`` (``groupObjects: true``).
The inner query reads ``orders(query:) { nodes { ... lineItems { nodes { ... } } } }``.
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
        op["status"] = "COMPLETED"
    polled: dict[str, Any] = gql.project(view(state, op), sel.fields)
    return polled


def view(state: SimState, op: dict[str, Any]) -> dict[str, Any]:
    done = op["status"] == "COMPLETED"
    expires = int((state.now() + timedelta(seconds=URL_TTL_S)).timestamp())
    count = len(_rows(state, op)) if done else 0
    return {
        "id": op["id"],
        "status": op["status"],
        "type": "QUERY",
        "errorCode": None,
        "createdAt": op["createdAt"],
        "completedAt": state.now().isoformat().replace("+00:00", "Z") if done else None,
        "objectCount": str(count),
        "rootObjectCount": str(count),
        "fileSize": None,
        "url": f"{op['base']}/_sim/bulk/{op['number']}.jsonl?expires={expires}" if done else None,
        "partialDataUrl": None,
    }


def _rows(state: SimState, op: dict[str, Any]) -> list[dict[str, Any]]:
    shop = state.shops[op["domain"]]
    terms = gql.search_filter(op["inner"].args.get("query"))
    rows = [
        r for r in shop.orders.values() if gql.matches(r, terms) and state.visible(op["domain"], "orders", r)
    ]
    return sorted(rows, key=lambda r: r["id"])


def _lines(state: SimState, op: dict[str, Any]) -> Iterator[bytes]:
    shop = state.shops[op["domain"]]
    nodes = next((s for s in op["inner"].fields if s.name == "nodes"), None)
    fields = nodes.fields if nodes is not None else []
    own = [f for f in fields if f.name != "lineItems"]
    items = next((f for f in fields if f.name == "lineItems"), None)
    item_fields: list[gql.Selection] = (
        next((s.fields for s in items.fields if s.name == "nodes"), []) if items else []
    )
    for row in _rows(state, op):
        node = gql.render_order(row, shop.spec.currency, 10**6, None)
        yield (json.dumps(gql.project(node, own)) + "\n").encode()
        if items is not None:
            for line in (node.get("lineItems") or {}).get("nodes") or []:
                child = {**gql.project(line, item_fields), "__parentId": node["id"]}
                yield (json.dumps(child) + "\n").encode()


async def download(request: Request) -> Response:
    """The operation's JSONL (streamed); 403 once the URL expired, as a signed storage URL does."""
    state: SimState = request.app.state.sim
    ops = state.bulk_ops
    op = ops.get(int(request.path_params["number"]))
    expires = request.query_params.get("expires", "0")
    if op is None or op["status"] != "COMPLETED":
        return Response("<Error><Code>NoSuchKey</Code></Error>", 404, media_type="application/xml")
    if not expires.isdigit() or int(expires) < state.now().timestamp():
        return Response(
            "<Error><Code>ExpiredToken</Code><Message>The provided token has expired.</Message></Error>",
            403,
            media_type="application/xml",
        )
    state.stats["bulk_downloads"] += 1
    return StreamingResponse(_lines(state, op), media_type="application/jsonl")
