"""Shopify's own ``/_sim/...`` endpoints: cost bucket, stats, shops, refunds, deletions, customer redaction,
per-shop truth, signed webhooks.

Reset, faults, clock, the request log and ``GET /_sim/truth?shop=..`` are the shared protocol
(core.testing.sim_app)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from core.testing.simulator import SimulatorError
from metricx_shopify.simulator.data import ShopSpec
from metricx_shopify.simulator.state import DELETE_TOPICS, SimState
from metricx_shopify.simulator.webhooks import send_order_webhook


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    body = await request.json()
    return body if isinstance(body, dict) else {}


class Control:
    """Control handlers bound to one :class:`SimState`."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    async def points(self, request: Request) -> JSONResponse:
        """The GraphQL cost bucket of every shop: ``maximum`` points, ``restore_rate`` per second."""
        body = await _body(request)
        self.state.configure_points(body.get("maximum"), body.get("restore_rate"))
        return JSONResponse({"maximum": self.state.point_max, "restore_rate": self.state.point_restore})

    async def stats(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "stats": dict(self.state.stats),
                "faults": [fault.to_json() for fault in self.state.faults],
            }
        )

    async def add_shop(self, request: Request) -> JSONResponse:
        body = await _body(request)
        allowed = {f.name for f in fields(ShopSpec)}
        spec = ShopSpec(**{k: v for k, v in body.items() if k in allowed})
        self.state.add_shop(spec)
        return JSONResponse({"domain": spec.domain, "token": spec.token})

    def _shop(self, request: Request) -> str | None:
        domain = request.path_params["domain"]
        return domain if domain in self.state.shops else None

    async def truth(self, request: Request) -> JSONResponse:
        domain = self._shop(request)
        if domain is None:
            return JSONResponse({"error": "no such shop"}, status_code=404)
        return JSONResponse(self.state.shop_truth(domain))

    async def tokens(self, request: Request) -> JSONResponse:
        """Install the app with expiring offline tokens: a 60-minute access token and a refresh token."""
        domain = self._shop(request)
        if domain is None:
            return JSONResponse({"error": "no such shop"}, status_code=404)
        return JSONResponse(self.state.issue_tokens(domain))

    async def order(self, request: Request) -> JSONResponse:
        domain = self._shop(request)
        order = self.state.shops[domain].orders.get(int(request.path_params["order_id"])) if domain else None
        if order is None:
            return JSONResponse({"error": "no such order"}, status_code=404)
        return JSONResponse({"order": order})

    async def refund(self, request: Request) -> JSONResponse:
        domain = self._shop(request)
        order_id = int(request.path_params["order_id"])
        if domain is None or order_id not in self.state.shops[domain].orders:
            return JSONResponse({"error": "no such order"}, status_code=404)
        body = await _body(request)
        return JSONResponse({"order": self.state.refund(domain, order_id, body.get("amount"))})

    async def webhook(self, request: Request) -> JSONResponse:
        """POST an order webhook to ``url`` (body: url, order_id, topic, times, bad_signature, webhook_id)."""
        domain = self._shop(request)
        body = await _body(request)
        order = self.state.shops[domain].orders.get(int(body.get("order_id", 0))) if domain else None
        if domain is None or order is None or not body.get("url"):
            return JSONResponse({"error": "need a known shop, order_id and url"}, status_code=400)
        codes = await send_order_webhook(
            body["url"],
            domain,
            order,
            secret=body.get("secret") or self.state.webhook_secret,
            topic=body.get("topic", "orders/updated"),
            webhook_id=body.get("webhook_id"),
            times=int(body.get("times", 1)),
            bad_signature=bool(body.get("bad_signature")),
        )
        return JSONResponse({"status_codes": codes})

    async def delete(self, request: Request) -> JSONResponse:
        """Delete ``/{resource}/{id}`` (orders, products, customers); with ``url`` in the body, POST the
        signed ``{resource}/delete`` webhook there (``secret``, ``webhook_id``, ``times`` as above)."""
        resource = request.path_params["resource"]
        return await self._change(
            request,
            DELETE_TOPICS.get(resource, ""),
            lambda domain: self.state.delete(domain, resource, int(request.path_params["item_id"])),
        )

    async def redact(self, request: Request) -> JSONResponse:
        """Erase the customer ``{id}`` from the shop (see ``SimState.redact_customer``); with ``url`` in the
        body, POST the signed ``customers/redact`` webhook there."""
        customer_id = int(request.path_params["customer_id"])
        return await self._change(
            request, "customers/redact", lambda domain: self.state.redact_customer(domain, customer_id)
        )

    async def _change(
        self, request: Request, topic: str, change: Callable[[str], dict[str, Any]]
    ) -> JSONResponse:
        domain = self._shop(request)
        if domain is None:
            return JSONResponse({"error": "no such shop"}, status_code=404)
        body = await _body(request)
        try:
            payload = change(domain)
        except SimulatorError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        answer: dict[str, Any] = {"topic": topic, "body": payload}
        if body.get("url"):
            answer["status_codes"] = await send_order_webhook(
                body["url"],
                domain,
                payload,
                secret=body.get("secret") or self.state.webhook_secret,
                topic=topic,
                webhook_id=body.get("webhook_id"),
                times=int(body.get("times", 1)),
            )
        return JSONResponse(answer)
