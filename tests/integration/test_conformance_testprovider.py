"""The test provider, the suite's first adopter: the conformance suite against its simulator process."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
from metricx_testprovider.simulator import VALID_TOKEN

from core.providers import AccountRef, Credentials
from core.testing.conformance import ProviderConformance, SimulatorProcess, simulator_process

FAULT_SWITCHES: dict[str, dict[str, Any]] = {
    "throttle": {"rate_limit_s": 30},
    "server_error": {"transient": 10**6},
    "expired_token": {"revoked": True},
}


@pytest.fixture(scope="module")
def tp_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    log = tmp_path_factory.mktemp("tp-sim") / "simulator.log"
    with simulator_process("metricx_testprovider.simulator:app", log_path=log) as sim:
        yield sim


class TestTestProviderConformance(ProviderConformance):
    provider_name = "testprovider"
    expected_levels = ("campaign", "ad")

    @pytest.fixture(autouse=True)
    def _simulator(self, tp_sim: SimulatorProcess) -> None:
        self.sim = tp_sim
        self.control(reset=True)

    def control(self, **body: Any) -> None:
        httpx.post(f"{self.sim.url}/_control", json=body).raise_for_status()

    def account(self) -> AccountRef:
        return AccountRef("conn-1", "ws-1", "acct-conformance", config={"base_url": self.sim.url})

    def credentials(self, kind: str) -> Credentials:
        token = {"valid": VALID_TOKEN, "missing": None, "expired": "tp-expired-token"}[kind]
        return Credentials(access_token=token)

    def http_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=10)

    def inject_fault(self, kind: str) -> None:
        self.control(**FAULT_SWITCHES[kind])

    def large_account(self) -> AccountRef:
        self.control(campaigns=10, ads_per_campaign=10)
        return self.account()

    def timezone_accounts(self) -> Sequence[AccountRef]:
        # UTC+14: the account's today is a day ahead of UTC for ten hours of every day.
        self.control(timezone="Pacific/Kiritimati")
        return [self.account()]
