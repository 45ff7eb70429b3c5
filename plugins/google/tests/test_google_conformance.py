"""Google Ads against core's provider conformance suite, its simulator running as its own process."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
from metricx_google import GoogleAdsProvider, GoogleSettings
from metricx_google.simulator import (
    CHILD_BERLIN_ID,
    CHILD_NY_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_REFRESH_TOKEN,
    MANAGER_ID,
)
from pydantic import SecretStr

from core import AccountRef, Credentials, Provider
from core.testing.conformance import ProviderConformance, SimulatorProcess, simulator_process

LARGE_ID = "1000000099"
FAULTS: dict[str, dict[str, Any]] = {
    "throttle": {"kind": "throttle", "count": 10**6, "retry_after_s": 30},
    "server_error": {"kind": "server_error", "count": 10**6, "status": 503, "code": "TRANSIENT_ERROR"},
}


@pytest.fixture(scope="module")
def google_sim_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    log = tmp_path_factory.mktemp("google-sim") / "simulator.log"
    with simulator_process("metricx_google.simulator.app:create_app", log_path=log, factory=True) as sim:
        yield sim


def account(customer_id: str) -> AccountRef:
    return AccountRef(f"conn-{customer_id}", "ws-1", customer_id, config={"login_customer_id": MANAGER_ID})


class TestGoogleConformance(ProviderConformance):
    provider_name = "google"
    expected_levels = ("campaign", "ad_group", "ad")

    @pytest.fixture(autouse=True)
    def _simulator(self, google_sim_process: SimulatorProcess) -> None:
        self.sim = google_sim_process
        self.post("/_sim/reset")

    def post(self, path: str, body: dict[str, Any] | None = None) -> None:
        httpx.post(f"{self.sim.url}{path}", json=body or {}, timeout=10).raise_for_status()

    def provider(self) -> Provider:
        # The registered class, pointed at this test's simulator (the registered instance reads the env).
        settings = GoogleSettings(
            base_url=self.sim.url,
            token_url=f"{self.sim.url}/token",
            client_id=DEFAULT_CLIENT_ID,
            client_secret=SecretStr(DEFAULT_CLIENT_SECRET),
            entity_refresh_s=0,  # the suite checks what each entity sync lists
            account_refresh_s=0,
        )
        return GoogleAdsProvider(settings)

    def account(self) -> AccountRef:
        return account(CHILD_NY_ID)

    def credentials(self, kind: str) -> Credentials:
        if kind == "missing":
            return Credentials()
        if kind == "expired":
            # A refresh token Google revoked: access tokens can no longer be minted (invalid_grant).
            self.post("/_sim/revoke", {"refresh_token": "1//revoked-refresh-token"})
            return Credentials(refresh_token="1//revoked-refresh-token")
        return Credentials(refresh_token=DEFAULT_REFRESH_TOKEN)

    def http_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=30)

    def inject_fault(self, kind: str) -> None:
        if kind == "expired_token":
            self.post("/_sim/revoke", {"refresh_token": DEFAULT_REFRESH_TOKEN})
        else:
            self.post("/_sim/faults", FAULTS[kind])

    def large_account(self) -> AccountRef:
        self.post(
            "/_sim/accounts",
            {
                "customer_id": LARGE_ID,
                "manager_id": MANAGER_ID,
                "campaigns": 5,
                "ad_groups_per_campaign": 5,
                "ads_per_ad_group": 6,
                "seed": 99,
            },
        )
        return account(LARGE_ID)

    def timezone_accounts(self) -> Sequence[AccountRef]:
        return [account(CHILD_NY_ID), account(CHILD_BERLIN_ID)]
