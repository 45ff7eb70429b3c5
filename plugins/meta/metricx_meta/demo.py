"""How `metricx demo` runs and drives the Meta Marketing API simulator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from core import Credentials, DemoConnection, SimulatorSpec

VALID_TOKEN = "sim-valid-token"
# Unknown to the simulator, so Meta answers 190 like for a revoked token: the demo's reconnect case.
REVOKED_TOKEN = "demo-revoked-token"


def worker_env(url: str) -> Mapping[str, str]:
    return {
        "METRICX_META_BASE_URL": url,
        "METRICX_META_ASYNC_FIRST_POLL_S": "0.25",
        "METRICX_META_ASYNC_POLL_INTERVAL_S": "0.5",
    }


def demo_connections(url: str) -> Sequence[DemoConnection]:
    token = Credentials(access_token=VALID_TOKEN)
    return [
        DemoConnection("1001", "Meta · Los Angeles store", token),
        DemoConnection("1002", "Meta · Tokyo store", token, role="throttled"),
        DemoConnection("1003", "Meta · Kolkata store", token),
        DemoConnection(
            "1004", "Meta · expired login", Credentials(access_token=REVOKED_TOKEN), role="reconnect"
        ),
    ]


SIMULATOR = SimulatorSpec(
    provider="meta",
    module="metricx_meta.simulator",
    worker_env=worker_env,
    demo_connections=demo_connections,
)
