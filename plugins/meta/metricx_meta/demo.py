"""How `metricx demo` runs and drives the Meta Marketing API simulator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import httpx

from core.providers import Credentials, DemoConnection, SimulatorSpec

VALID_TOKEN = "sim-valid-token"
# Unknown to the simulator, so Meta answers 190 like for a revoked token: the demo's reconnect case.
REVOKED_TOKEN = "demo-revoked-token"


def worker_env(url: str) -> Mapping[str, str]:
    return {"METRICX_META_BASE_URL": url, "METRICX_META_ASYNC_POLL_INTERVAL_S": "0.5"}


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


async def late_conversions(http: httpx.AsyncClient, url: str) -> None:
    (await http.post(f"{url}/_sim/advance", json={"revisions": 2})).raise_for_status()


async def throttle(http: httpx.AsyncClient, url: str, external_account_id: str) -> None:
    fault = {
        "kind": "throttle",
        "code": 80000,
        "count": 1,
        "regain_minutes": 1,
        "account": external_account_id,
    }
    (await http.post(f"{url}/_sim/faults", json=fault)).raise_for_status()


SIMULATOR = SimulatorSpec(
    provider="meta",
    module="metricx_meta.simulator",
    worker_env=worker_env,
    demo_connections=demo_connections,
    late_conversions=late_conversions,
    throttle=throttle,
)
