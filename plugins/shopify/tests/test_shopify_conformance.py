"""Shopify against core's provider conformance suite, its simulator running as its own process."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
from metricx_shopify.provider import ShopifyProvider
from metricx_shopify.settings import ShopifySettings
from metricx_shopify.simulator.state import DEFAULT_SHOPS

from core import AccountRef, Credentials, Provider
from core.testing.conformance import ProviderConformance, SimulatorProcess, simulator_process

LARGE = "conformance-large.myshopify.com"
FAULTS: dict[str, dict[str, Any]] = {
    "throttle": {"kind": "throttle", "count": 10**6, "retry_after_s": 120},
    "server_error": {"kind": "server_error", "count": 10**6},
    "expired_token": {"kind": "token_expired", "count": None},
}


@pytest.fixture(scope="module")
def shopify_sim_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    log = tmp_path_factory.mktemp("shopify-sim") / "simulator.log"
    # A Plus store's cost bucket: these tests are about the data and the faults, not cost pacing
    # (that is test_shopify_sync's), which would only add a minute of waiting.
    factory = "metricx_shopify.simulator:create_plus_app"
    with simulator_process(factory, log_path=log, factory=True) as sim:
        yield sim


def account(domain: str) -> AccountRef:
    return AccountRef(f"conn-{domain}", "ws-1", domain, config={"shop_domain": domain})


class TestShopifyConformance(ProviderConformance):
    provider_name = "shopify"
    expected_levels = ("store", "store_refunds")

    @pytest.fixture(autouse=True)
    def _simulator(self, shopify_sim_process: SimulatorProcess) -> None:
        self.sim = shopify_sim_process
        self.post("/_sim/reset")

    def post(self, path: str, body: dict[str, Any] | None = None) -> None:
        httpx.post(f"{self.sim.url}{path}", json=body or {}, timeout=10).raise_for_status()

    def provider(self) -> Provider:
        # The registered class, pointed at this test's simulator, with in-request retries off.
        return ShopifyProvider(ShopifySettings(base_url=self.sim.url, max_retries=0, max_throttle_retries=0))

    def account(self) -> AccountRef:
        return account(DEFAULT_SHOPS[0].domain)

    def credentials(self, kind: str) -> Credentials:
        token = {"valid": DEFAULT_SHOPS[0].token, "missing": None, "expired": "shpat_revoked_by_the_merchant"}
        return Credentials(access_token=token[kind])

    def http_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=30)

    def inject_fault(self, kind: str) -> None:
        self.post("/_sim/faults", FAULTS[kind])

    def large_account(self) -> AccountRef:
        self.post(
            "/_sim/shops", {"domain": LARGE, "seed": 42, "products": 5, "customers": 200, "orders": 3000}
        )
        return account(LARGE)

    def timezone_accounts(self) -> Sequence[AccountRef]:
        return [account(spec.domain) for spec in DEFAULT_SHOPS]  # New York and Berlin

    def credentials_for(self, domain: str) -> Credentials:
        return Credentials(access_token=next(s.token for s in DEFAULT_SHOPS if s.domain == domain))
