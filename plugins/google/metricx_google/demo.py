"""How `metricx demo` runs and drives the Google Ads simulator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from core import Credentials, DemoConnection, SimulatorSpec
from metricx_google.simulator.state import (
    CHILD_BERLIN_ID,
    CHILD_NY_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_REFRESH_TOKEN,
    MANAGER_ID,
)


def worker_env(url: str) -> Mapping[str, str]:
    return {
        "METRICX_GOOGLE_BASE_URL": url,
        "METRICX_GOOGLE_TOKEN_URL": f"{url}/token",
        "METRICX_GOOGLE_AUTH_URL": f"{url}/o/oauth2/v2/auth",  # the connect flow's consent page
        "METRICX_GOOGLE_CLIENT_ID": DEFAULT_CLIENT_ID,
        "METRICX_GOOGLE_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
    }


def demo_connections(url: str) -> Sequence[DemoConnection]:
    manager = {"login_customer_id": MANAGER_ID}
    return [
        DemoConnection(
            CHILD_NY_ID, "Google Ads · Sim Shop NY", Credentials(refresh_token=DEFAULT_REFRESH_TOKEN), manager
        ),
        DemoConnection(
            CHILD_BERLIN_ID,
            "Google Ads · Sim Shop Berlin",
            Credentials(refresh_token=DEFAULT_REFRESH_TOKEN),
            manager,
            role="throttled",
        ),
    ]


SIMULATOR = SimulatorSpec(
    provider="google",
    module="metricx_google.simulator",
    worker_env=worker_env,
    demo_connections=demo_connections,
)
