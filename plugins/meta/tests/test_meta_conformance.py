"""The core's provider conformance suite against the Meta simulator (in-process, frozen clock)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import httpx
import pytest
from meta_helpers import BASE_URL, NOW, make_accounts
from metricx_meta import MetaProvider, MetaSettings
from metricx_meta.simulator import DEFAULT_TOKEN, SimState, create_app, seed_account

from core import AccountRef, Credentials, Provider

conformance = pytest.importorskip("core.testing.conformance")

FAULTS: dict[str, dict[str, Any]] = {
    "throttle": {"kind": "throttle", "code": 80000, "regain_minutes": 2, "count": None},
    "server_error": {"kind": "server_error", "count": None},
}


class TestMetaConformance(conformance.ProviderConformance):  # type: ignore[misc]
    provider_name = "meta"
    expected_levels = ("campaign", "adset", "ad")

    @pytest.fixture(autouse=True)
    def _simulator(self) -> None:
        self.sim = SimState(make_accounts, now=NOW)
        self.app = create_app(self.sim)

    def provider(self) -> Provider:
        settings = MetaSettings(base_url=BASE_URL, async_poll_interval_s=0, max_retries=0, retry_backoff_s=0)
        return MetaProvider(settings)

    def account(self) -> AccountRef:
        return AccountRef("conn-1", "ws-1", "act_1001")

    def credentials(self, kind: str) -> Credentials:
        token = {"valid": DEFAULT_TOKEN, "missing": None, "expired": "meta-expired-token"}[kind]
        self.sim.tokens["meta-expired-token"] = "expired"
        return Credentials(access_token=token)

    def http_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=BASE_URL)

    def inject_fault(self, kind: str) -> None:
        if kind == "expired_token":
            self.sim.tokens[DEFAULT_TOKEN] = "expired"
        else:
            self.sim.add_faults([FAULTS[kind]])

    def large_account(self) -> AccountRef:
        spec = {"campaigns": 6, "adsets_per_campaign": 3, "ads_per_adset": 4, "seed": 9}
        self.sim.add_account(seed_account("5005", timezone="Asia/Kolkata", today=self.now().date(), **spec))
        return AccountRef("conn-2", "ws-1", "act_5005")

    def timezone_accounts(self) -> Sequence[AccountRef]:
        return [AccountRef("conn-3", "ws-1", "act_3003"), AccountRef("conn-4", "ws-1", "act_1001")]

    def now(self) -> datetime:
        return self.sim.now()
