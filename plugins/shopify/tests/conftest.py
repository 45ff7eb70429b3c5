"""Fixtures: the Shopify simulator over real HTTP (uvicorn thread), per-test shops, shopify connections."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from metricx_shopify.settings import get_shopify_settings
from metricx_shopify.simulator import ShopSpec, SimState, create_app
from shopify_helpers import FAST_ENV, WEBHOOK_SECRET, serve


@dataclass
class ShopifySim:
    url: str
    state: SimState

    def control(self, path: str, **body: Any) -> Any:
        response = httpx.post(f"{self.url}/_sim/{path}", json=body)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/_sim/stats").json()

    def truth(self, domain: str) -> dict[str, Any]:
        return httpx.get(f"{self.url}/_sim/shops/{domain}/truth").json()


@pytest.fixture(scope="session")
def _shopify_server() -> Iterator[ShopifySim]:
    state = SimState(shops=(), webhook_secret=WEBHOOK_SECRET)
    url, server, thread = serve(create_app(state))
    yield ShopifySim(url, state)
    server.should_exit = True
    thread.join(5)


@pytest.fixture
def shopify_sim(_shopify_server: ShopifySim) -> Iterator[ShopifySim]:
    """The session's simulator with default faults and a fast-restoring GraphQL cost bucket."""
    state = _shopify_server.state
    state.clear_faults()
    state.configure_points(2000, 5000.0)  # GraphQL cost bucket: restored fast unless a test slows it
    state.stats.clear()
    yield _shopify_server
    state.clear_faults()
    state.clock.run_real()  # a test that let simulated days pass must not move the next test's shops


@pytest.fixture
def shopify_env(shopify_sim: ShopifySim, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The plugin's settings for this process (and for worker processes, returned as env)."""
    env = {**FAST_ENV, "METRICX_SHOPIFY_BASE_URL": shopify_sim.url}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_shopify_settings.cache_clear()
    yield env
    get_shopify_settings.cache_clear()


@pytest.fixture
def new_shop(shopify_sim: ShopifySim) -> Any:
    """``new_shop(**spec)`` -> a freshly generated shop with a unique domain."""

    def make(**spec: Any) -> ShopSpec:
        domain = f"t-{uuid.uuid4().hex[:10]}.myshopify.com"
        shop_spec = ShopSpec(domain=domain, **spec)
        shopify_sim.state.add_shop(shop_spec)
        return shop_spec

    return make


@pytest.fixture
async def shop_connection(metricx_env: Any, shopify_env: dict[str, str]) -> Any:
    """``await shop_connection(spec, token=...)`` -> (workspace_id, connection_id) of a shopify connection."""
    from core import Credentials
    from core.testing.harness import create_connection, create_workspace, session_scope

    async def make(
        spec: ShopSpec, token: str | None = "", credentials: Credentials | None = None
    ) -> tuple[uuid.UUID, uuid.UUID]:
        async with session_scope() as session:
            ws = await create_workspace(session, f"ws-{uuid.uuid4().hex[:6]}")
            conn = await create_connection(
                session,
                ws.id,
                "shopify",
                spec.domain,
                credentials or Credentials(access_token=spec.token if token == "" else token),
                config={"shop_domain": spec.domain},
            )
            return ws.id, conn.id

    return make
