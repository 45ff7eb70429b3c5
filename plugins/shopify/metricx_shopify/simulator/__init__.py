"""A Shopify GraphQL Admin API simulator (ASGI) on the shared base, faithful to API-FACTS.md part C.

``python -m metricx_shopify.simulator --host 127.0.0.1 --port 8083`` serves the
seeded shops; point ``METRICX_SHOPIFY_BASE_URL`` at it. Each shop's token is
``ShopSpec.token`` (``shpat_sim_sim_store_1`` for ``sim-store-1.myshopify.com``).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

from core.testing.sim_app import simulator_app
from metricx_shopify.simulator import bulk
from metricx_shopify.simulator.api import GraphQLApi, access_token
from metricx_shopify.simulator.control import Control
from metricx_shopify.simulator.data import Shop, ShopSpec, generate
from metricx_shopify.simulator.oauth import oauth_routes
from metricx_shopify.simulator.state import DEFAULT_SHOPS, SimState
from metricx_shopify.simulator.webhooks import send_order_webhook, sign

__all__ = [
    "DEFAULT_SHOPS",
    "Shop",
    "ShopSpec",
    "SimState",
    "create_app",
    "create_plus_app",
    "generate",
    "send_order_webhook",
    "sign",
]


def create_app(state: SimState | None = None) -> Starlette:
    """The simulator app on the shared base; ``app.state.sim`` is its :class:`SimState`."""
    sim = state or SimState()
    control, graphql = Control(sim), GraphQLApi(sim)
    shop_path = "/_sim/shops/{domain}"
    own_control = [
        Route("/_sim/points", control.points, methods=["POST"]),
        Route("/_sim/stats", control.stats),
        Route("/_sim/shops", control.add_shop, methods=["POST"]),
        Route(f"{shop_path}/truth", control.truth),
        Route(f"{shop_path}/tokens", control.tokens, methods=["POST"]),
        Route(shop_path + "/orders/{order_id:int}", control.order),
        Route(shop_path + "/orders/{order_id:int}/refund", control.refund, methods=["POST"]),
        Route(shop_path + "/customers/{customer_id:int}/redact", control.redact, methods=["POST"]),
        Route(shop_path + "/{resource}/{item_id:int}/delete", control.delete, methods=["POST"]),
        Route(f"{shop_path}/webhooks", control.webhook, methods=["POST"]),
    ]
    routes = [
        Route("/admin/api/{version}/graphql.json", graphql.handle, methods=["POST"]),
        Route("/admin/oauth/access_token", access_token, methods=["POST"]),
        *oauth_routes(sim),
        Route("/_sim/bulk/{number:int}.jsonl", bulk.download),
    ]
    return simulator_app(sim, routes, control=own_control)


def create_plus_app() -> Starlette:
    """The simulator whose shops have Shopify Plus's cost bucket (20,000 points, 1,000 a second): for
    the demo and the tests that need a shop's data rather than Standard-plan pacing."""
    return create_app(SimState(plan="plus"))
