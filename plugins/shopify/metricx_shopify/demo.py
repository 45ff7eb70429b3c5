"""How `metricx demo` runs and drives the Shopify Admin API simulator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import httpx

from core.providers import Credentials, DemoConnection, SimulatorSpec
from metricx_shopify.settings import get_shopify_settings
from metricx_shopify.simulator.state import DEFAULT_SHOPS, SIM_WEBHOOK_SECRET


def worker_env(url: str) -> Mapping[str, str]:
    return {"METRICX_SHOPIFY_BASE_URL": url, "METRICX_SHOPIFY_WEBHOOK_SECRET": SIM_WEBHOOK_SECRET}


def demo_connections(url: str) -> Sequence[DemoConnection]:
    roles = ("normal", "throttled")
    return [
        DemoConnection(
            spec.domain,
            f"Shopify · {spec.domain.split('.')[0]}",
            Credentials(access_token=spec.token),
            {"shop_domain": spec.domain},
            role=role,
        )
        for spec, role in zip(DEFAULT_SHOPS, roles, strict=True)
    ]


async def late_conversions(http: httpx.AsyncClient, url: str) -> None:
    """A customer returns a recent order: its day's net sales drop after the re-sync."""
    spec = DEFAULT_SHOPS[0]
    since = (datetime.now(UTC) - timedelta(days=6)).isoformat()
    response = await http.get(
        f"{url}/admin/api/{get_shopify_settings().api_version}/orders.json",
        params={"status": "any", "limit": 1, "created_at_min": since},
        headers={"X-Shopify-Access-Token": spec.token},
    )
    response.raise_for_status()
    for order in response.json()["orders"]:
        (
            await http.post(f"{url}/_sim/shops/{spec.domain}/orders/{order['id']}/refund", json={})
        ).raise_for_status()


async def throttle(http: httpx.AsyncClient, url: str, external_account_id: str) -> None:
    # Longer than the client waits in place (30 s), so the sync is deferred.
    fault = {"throttles": 2, "throttle_retry_after_s": 45}
    (await http.post(f"{url}/_sim/faults", json=fault)).raise_for_status()


SIMULATOR = SimulatorSpec(
    provider="shopify",
    module="metricx_shopify.simulator",
    worker_env=worker_env,
    demo_connections=demo_connections,
    late_conversions=late_conversions,
    throttle=throttle,
)
