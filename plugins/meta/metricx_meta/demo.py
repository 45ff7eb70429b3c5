"""How `metricx demo` runs and drives the Meta Marketing API simulator.

``python -m metricx_meta.demo --host H --port P`` serves the simulator with two more ad accounts than
its default three: 1004, whose demo connection holds a revoked token (reconnect it through the
simulator's login), and 1005, which the demo leaves for ``metricx connect meta`` to connect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date

from core import Credentials, DemoConnection, SimulatorSpec
from metricx_meta.simulator import SIM_APP_ID, SIM_APP_SECRET, default_accounts, seed_account
from metricx_meta.simulator.data import Account

VALID_TOKEN = "sim-valid-token"
# Unknown to the simulator, so Meta answers 190 like for a revoked token: the demo's reconnect case.
REVOKED_TOKEN = "demo-revoked-token"


def demo_accounts(today: date) -> list[Account]:
    """The simulator's accounts in the demo: the default three, the expired login's and a free one."""
    return [
        *default_accounts(today),
        seed_account(
            "1004", name="Paris store", timezone="Europe/Paris", currency="EUR", seed=4, today=today
        ),
        seed_account(
            "1005", name="Sao Paulo store", timezone="America/Sao_Paulo", currency="BRL", seed=5, today=today
        ),
    ]


def worker_env(url: str) -> Mapping[str, str]:
    return {
        "METRICX_META_BASE_URL": url,
        "METRICX_META_ASYNC_FIRST_POLL_S": "0.25",
        "METRICX_META_ASYNC_POLL_INTERVAL_S": "0.5",
        # The connect flow: the simulator's login dialog and the app it knows.
        "METRICX_META_OAUTH_DIALOG_URL": url,
        "METRICX_META_APP_ID": SIM_APP_ID,
        "METRICX_META_APP_SECRET": SIM_APP_SECRET,
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
    module="metricx_meta.demo",
    worker_env=worker_env,
    demo_connections=demo_connections,
)

if __name__ == "__main__":
    from metricx_meta.simulator.__main__ import main

    main(accounts=demo_accounts)
