"""The Admin API routes: ``POST /admin/api/{version}/graphql.json`` and the token endpoint.

Requests are authenticated by ``X-Shopify-Access-Token`` (a token belongs to one shop) and paced
by the shop's GraphQL cost bucket (``THROTTLED`` inside a 200). The legacy REST routes
(``shop.json`` and the ``products`` / ``customers`` / ``orders`` lists) are not served: nothing in
metricx calls them any more.

The shared faults (core.testing.simulator) in Shopify's shapes: ``throttle`` -> a ``THROTTLED``
answer with an empty bucket; ``server_error`` -> ``status`` (default 503); ``timeout`` ->
``seconds`` of delay; ``token_expired`` / ``token_revoked`` -> 401 "Invalid API key or access
token"; ``malformed`` -> a page whose first node carries a bad value (``row``), or a ``truncated``
/ ``empty`` 200 body; ``version_sunset`` -> served as the oldest supported version
(``X-Shopify-API-Version`` says which), as Shopify does.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.testing.sim_app import note_account
from core.testing.simulator import Fault
from metricx_shopify.simulator import bulk
from metricx_shopify.simulator import graphql as gql
from metricx_shopify.simulator.state import SimState

SUPPORTED_VERSIONS = ("2025-10", "2026-01", "2026-04", "2026-07", "2026-10")
INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"


def _error(status: int, errors: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"errors": errors}, status_code=status, headers=headers)


def _one_row(fault: Fault) -> bool:
    return str(fault.params.get("mode", "row")) == "row"


def _whole_body(fault: Fault) -> bool:
    return not _one_row(fault)


async def _front(st: SimState, request: Request) -> tuple[str | None, Response | None, dict[str, str]]:
    """What every GraphQL request meets first: the served version, injected timeouts and server
    errors, and the token; (shop domain, early response or None, headers for the answer)."""
    st.stats["requests"] += 1
    version = request.path_params["version"]
    domain = st.token_shop(request.headers.get("X-Shopify-Access-Token", ""))
    note_account(request, domain)
    path, method = request.url.path, request.method
    sunset = st.take_fault(
        "version_sunset", domain, path, method, lambda f: f.params.get("version") in (None, version)
    )
    # Shopify serves an unsupported version as the oldest supported one, and says so in a header.
    served = version if version in SUPPORTED_VERSIONS and sunset is None else SUPPORTED_VERSIONS[0]
    headers = {"X-Shopify-API-Version": served}
    if (slow := st.take_fault("timeout", domain, path, method)) is not None:
        await asyncio.sleep(float(slow.params.get("seconds", 1.0)))
    refused = any(st.take_fault(k, domain, path, method) for k in ("token_revoked", "token_expired"))
    if domain is None or refused:
        st.stats["unauthorized"] += 1
        return None, _error(401, INVALID_TOKEN, headers), headers
    if (fault := st.take_fault("server_error", domain, path, method)) is not None:
        st.stats["server_errors"] += 1
        return domain, _error(int(fault.params.get("status", 503)), "Service Unavailable", headers), headers
    return domain, None, headers


def _first(sel: gql.Selection | None) -> int | None:
    return None if sel is None or sel.args.get("first") is None else int(sel.args["first"])


class GraphQLApi:
    """``POST /admin/api/{version}/graphql.json``: the queries metricx sends (see :mod:`.graphql`)."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    async def handle(self, request: Request) -> Response:
        st = self.state
        st.stats["graphql"] += 1
        domain, early, headers = await _front(st, request)
        if early is not None:
            return early
        assert domain is not None  # _front answers early without a shop
        path, method = request.url.path, request.method
        try:
            body = json.loads(await request.body())
            query, variables = body["query"], body.get("variables") or {}
            if not isinstance(query, str) or not isinstance(variables, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return _error(
                400, "Bad Request: a JSON body with 'query' (and optional 'variables') is required", headers
            )
        try:
            kind, _, selections = gql.parse(query, variables)
            if kind == "mutation" and [s.name for s in selections] == ["bulkOperationRunQuery"]:
                with st.lock:
                    payload = bulk.run_query(st, domain, selections[0], str(request.base_url))
                return JSONResponse({"data": {"bulkOperationRunQuery": payload}}, headers=headers)
            if kind != "query":
                raise gql.GraphQLError("mutations are not simulated")
            gql.validate(selections)
            requested = gql.cost(selections)
        except gql.GraphQLError as exc:
            return JSONResponse({"errors": [exc.body]}, headers=headers)
        bucket = st.point_bucket(domain)
        if requested > gql.MAX_COST:
            st.stats["max_cost_exceeded"] += 1
            message = (
                f"Query cost is {requested}, which exceeds the single query max cost limit "
                f"({gql.MAX_COST}).\n\n"
                "See https://shopify.dev/api/usage/limits#rate-limits for more information on how the\n"
                "cost of a query is calculated.\n\n"
                "To query larger amounts of data with fewer limits, bulk operations should be used "
                "instead.\nSee https://shopify.dev/tutorials/perform-bulk-operations-with-admin-api "
                "for usage details.\n"
            )
            error = {
                "message": message,
                "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": gql.MAX_COST},
            }
            return JSONResponse({"errors": [error]}, headers=headers)
        injected = st.take_fault("throttle", domain, path, method)
        if injected is not None or not bucket.take(requested):
            st.stats["throttled"] += 1
            status = bucket.status()
            if injected is not None:
                status["currentlyAvailable"] = 0
            throttled = {
                "errors": [
                    {
                        "message": "Throttled",
                        "extensions": {
                            "code": "THROTTLED",
                            "documentation": "https://shopify.dev/api/usage/rate-limits",
                        },
                    }
                ],
                "extensions": {
                    "cost": {
                        "requestedQueryCost": requested,
                        "actualQueryCost": None,
                        "throttleStatus": status,
                    }
                },
            }
            return JSONResponse(throttled, headers=headers)
        try:
            with st.lock:
                data, fraction = self._execute(domain, selections)
        except gql.GraphQLError as exc:
            bucket.refund(requested)
            return JSONResponse({"errors": [exc.body], "data": None}, headers=headers)
        actual = max(1, round(requested * fraction))
        bucket.refund(requested - actual)
        has_rows = any(isinstance(c, dict) and c.get("nodes") for c in data.values())
        cut = st.take_fault("malformed", domain, path, method, lambda f: has_rows or _whole_body(f))
        if cut is not None:
            mode = str(cut.params.get("mode", "row"))
            if mode in ("empty", "truncated"):
                raw = b"" if mode == "empty" else b'{"data": {"orders": {"nodes": [{"id": 1'
                return Response(raw, 200, headers=headers, media_type="application/json")
            st.stats["malformed_pages"] += 1
            for conn in data.values():
                if isinstance(conn, dict) and conn.get("nodes"):
                    node = conn["nodes"][0]
                    if "totalPriceSet" in node:
                        node["totalPriceSet"] = {
                            "shopMoney": {"amount": "not-a-number", "currencyCode": "USD"}
                        }
                    else:
                        node["legacyResourceId"] = "not-a-number"
        cost = {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": bucket.status(),
        }
        return JSONResponse({"data": data, "extensions": {"cost": cost}}, headers=headers)

    def _execute(self, domain: str, selections: list[gql.Selection]) -> tuple[dict[str, Any], float]:
        shop = self.state.shops[domain]
        currency = shop.spec.currency
        data: dict[str, Any] = {}
        fraction = 1.0
        for sel in selections:
            if sel.name == "shop":
                info = shop.info
                node = {
                    "id": gql.gid("Shop", info["id"]),
                    "name": info["name"],
                    "ianaTimezone": info["iana_timezone"],
                    "currencyCode": info["currency"],
                    "myshopifyDomain": info["myshopify_domain"],
                }
                data["shop"] = gql.project(node, sel.fields)
            elif sel.name == "currentAppInstallation":
                scopes = [{"handle": s} for s in shop.spec.scopes]
                data["currentAppInstallation"] = gql.project({"accessScopes": scopes}, sel.fields)
            elif sel.name in ("node", "currentBulkOperation"):
                data[sel.name] = bulk.poll(self.state, domain, sel)
            elif sel.name == "order":
                number = str(sel.args.get("id", "")).rsplit("/", 1)[-1]
                row = shop.orders.get(int(number)) if number.isdigit() else None
                data["order"] = (
                    None if row is None else gql.project(self._order(row, sel, currency), sel.fields)
                )
            elif sel.name == "refund":
                data["refund"] = self._refund(domain, sel, currency)
            else:
                data[sel.name], fraction = self._connection(domain, sel, currency)
        return data, fraction

    @staticmethod
    def _paging(sel: gql.Selection) -> gql.OrderPaging:
        """How the query pages an order's nested fields (from the order's own selection)."""
        nodes = next((s for s in sel.fields if s.name == "nodes"), sel)
        fields = {s.name: s for s in nodes.fields}
        lines, refunds = fields.get("lineItems"), fields.get("refunds")
        txs = next((s for s in refunds.fields if s.name == "transactions"), None) if refunds else None
        return gql.OrderPaging(
            line_first=int(lines.args.get("first") or 0) if lines else 0,
            line_after=lines.args.get("after") if lines else None,
            refunds_first=_first(refunds),
            tx_first=_first(txs),
        )

    def _order(self, row: dict[str, Any], sel: gql.Selection, currency: str) -> dict[str, Any]:
        return gql.render_order(row, currency, self._paging(sel))

    def _refund(self, domain: str, sel: gql.Selection, currency: str) -> dict[str, Any] | None:
        """``refund(id:)``: one refund, its ``transactions`` paged by ``first`` / ``after``."""
        number = str(sel.args.get("id", "")).rsplit("/", 1)[-1]
        found = next(
            (
                r
                for o in self.state.shops[domain].orders.values()
                if self.state.visible(domain, "orders", o)
                for r in o.get("refunds") or []
                if str(r["id"]) == number
            ),
            None,
        )
        if found is None:
            return None
        txs = next((s for s in sel.fields if s.name == "transactions"), None)
        first = int(txs.args["first"]) if txs is not None and txs.args.get("first") is not None else None
        node = gql.render_refund(found, currency, first, txs.args.get("after") if txs else None)
        projected: dict[str, Any] = gql.project(node, sel.fields)
        return projected

    def _connection(self, domain: str, sel: gql.Selection, currency: str) -> tuple[dict[str, Any], float]:
        shop = self.state.shops[domain]
        nodes_sel = next((s for s in sel.fields if s.name == "nodes"), None)
        if nodes_sel is not None and [f.name for f in nodes_sel.fields] == ["legacyResourceId"]:
            self.state.stats[f"ids_{sel.name}"] += 1  # an id listing (deletion reconciliation)
        else:
            self.state.stats[f"list_{sel.name}"] += 1
            if sel.args.get("after"):
                self.state.stats["page_info_requests"] += 1
        first = int(sel.args.get("first") or 0)
        sort = str(sel.args.get("sortKey") or "ID")
        terms = gql.search_filter(sel.args.get("query"))
        table = getattr(shop, sel.name)
        rows = [
            r for r in table.values() if gql.matches(r, terms) and self.state.visible(domain, sel.name, r)
        ]
        rows.sort(key=lambda r: gql.sort_key(r, sort), reverse=bool(sel.args.get("reverse")))
        after = sel.args.get("after")
        if after:
            key = gql.decode_cursor(str(after))
            if key is None:
                raise gql.GraphQLError(f"Invalid cursor for current pagination sort: {str(after)[:40]}")
            rows = [
                r
                for r in rows
                if (gql.sort_key(r, sort) < key if sel.args.get("reverse") else gql.sort_key(r, sort) > key)
            ]
        page = rows[:first]
        if sel.name == "orders":
            nodes = [self._order(r, sel, currency) for r in page]
        elif sel.name == "products":
            nodes = [gql.render_product(r) for r in page]
        else:
            nodes = [gql.render_customer(r, currency) for r in page]
        body = {
            "pageInfo": {
                "hasNextPage": len(rows) > first,
                "hasPreviousPage": bool(after),
                "startCursor": gql.encode_cursor(gql.sort_key(page[0], sort)) if page else None,
                "endCursor": gql.encode_cursor(gql.sort_key(page[-1], sort)) if page else None,
            },
            "nodes": nodes,
        }
        return gql.project(body, sel.fields), (len(page) + 1) / (first + 1)


async def access_token(request: Request) -> Response:
    """``POST /admin/oauth/access_token``: ``refresh_token`` (rotates) and ``client_credentials`` grants.

    The shop is the request's host (``{shop}.myshopify.com``); behind a base-URL override, the
    ``X-Shopify-Shop-Domain`` header the client sends names it.
    """
    st: SimState = request.app.state.sim
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
    domain = request.headers.get("X-Shopify-Shop-Domain") or request.url.hostname or ""
    note_account(request, domain)
    if domain not in st.shops:
        return JSONResponse({"error": "shop_not_found"}, status_code=404)
    if form.get("client_id") != st.client_id or form.get("client_secret") != st.client_secret:
        return JSONResponse(
            {"error": "invalid_client", "error_description": "Client authentication failed"}, status_code=401
        )
    grant = form.get("grant_type")
    if grant is None and form.get("code"):
        from metricx_shopify.simulator.oauth import exchange_code

        return exchange_code(st, domain, form)
    if grant == "client_credentials":
        return JSONResponse(st.issue_tokens(domain, with_refresh=False))
    if grant == "refresh_token":
        body = st.use_refresh_token(domain, str(form.get("refresh_token") or ""))
        if body is None:
            return JSONResponse(
                {
                    "error": "invalid_grant",
                    "error_description": "The refresh token is invalid, expired or was already used.",
                },
                status_code=400,
            )
        return JSONResponse(body)
    return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
