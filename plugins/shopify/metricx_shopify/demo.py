"""How `metricx demo` runs and drives the Shopify Admin API simulator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from core import Credentials, DemoConnection, SimulatorSpec
from metricx_shopify.simulator.state import (
    DEFAULT_SHOPS,
    SIM_CLIENT_ID,
    SIM_CLIENT_SECRET,
    SIM_WEBHOOK_SECRET,
)


def worker_env(url: str) -> Mapping[str, str]:
    return {
        "METRICX_SHOPIFY_BASE_URL": url,
        "METRICX_SHOPIFY_WEBHOOK_SECRET": SIM_WEBHOOK_SECRET,
        "METRICX_SHOPIFY_CLIENT_ID": SIM_CLIENT_ID,
        "METRICX_SHOPIFY_CLIENT_SECRET": SIM_CLIENT_SECRET,
    }


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


SIMULATOR = SimulatorSpec(
    provider="shopify",
    module="metricx_shopify.simulator",
    worker_env=worker_env,
    demo_connections=demo_connections,
    # A Plus store's cost bucket: the demo shows the sync, not Standard-plan pacing (the tests about
    # pacing keep the Standard bucket).
    args=("--plan", "plus"),
)
