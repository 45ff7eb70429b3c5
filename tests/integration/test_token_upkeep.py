"""Token upkeep: a Shopify store with 60-minute tokens and a Google account stay connected through a
simulated week with no sync and no user action (the simulators' clocks advanced, not waited);
credentials that cannot be refreshed show as expires_soon days ahead. Real PostgreSQL, Redis, an
in-process arq worker and both simulators over real HTTP."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from metricx_google.simulator import (
    CHILD_NY_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_REFRESH_TOKEN,
    MANAGER_ID,
)
from metricx_google.simulator import SimState as GoogleSim
from metricx_google.simulator import create_app as google_app
from metricx_shopify.settings import get_shopify_settings
from metricx_shopify.simulator import ShopSpec
from metricx_shopify.simulator import SimState as ShopifySim
from metricx_shopify.simulator import create_app as shopify_app
from metricx_testprovider.provider import TestProvider
from sqlalchemy import text

from core.config import get_settings
from core.enqueue import JobRequest, enqueue_many
from core.errors import AuthError
from core.plugins import Registry
from core.providers import Credentials
from core.sync.loading import load_credentials
from core.testing.http import serve_app
from core.testing.plugin import plugin_environment
from core.upkeep import credential_state, token_upkeep
from tests.conftest import fetch_one
from tests.integration.test_api_support import Tenant, api, connect, tenant

__all__ = ["api", "tenant"]  # fixtures

STEP_H = 6
IDLE_CONTROL = "1//sim-refresh-token-nobody-uses"


class Sims:
    def __init__(self, google: GoogleSim, shopify: ShopifySim) -> None:
        self.google, self.shopify = google, shopify

    def advance(self, hours: int) -> None:
        for sim in (self.google, self.shopify):
            sim.advance(hours * 3600)


@pytest.fixture
def sims(metricx_env: Any) -> Iterator[Sims]:
    google = GoogleSim(now=datetime.now(UTC))
    # Google revokes refresh tokens left unused (six months; scaled to two days here).
    google.refresh_idle_s = 2 * 86400
    shopify = ShopifySim(shops=())
    with serve_app(google_app(google)) as g_url, serve_app(shopify_app(shopify)) as s_url:
        env = {
            "METRICX_GOOGLE_BASE_URL": g_url,
            "METRICX_GOOGLE_TOKEN_URL": f"{g_url}/token",
            "METRICX_GOOGLE_CLIENT_ID": DEFAULT_CLIENT_ID,
            "METRICX_GOOGLE_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
            "METRICX_SHOPIFY_BASE_URL": s_url,
            "METRICX_SHOPIFY_CLIENT_ID": "sim-client-id",
            "METRICX_SHOPIFY_CLIENT_SECRET": "sim-client-secret",
        }
        get_shopify_settings.cache_clear()
        with plugin_environment(env, redis_url=metricx_env.redis_url):
            yield Sims(google, shopify)
        get_shopify_settings.cache_clear()


async def _connections(sims: Sims) -> tuple[uuid.UUID, uuid.UUID, str]:
    from core.testing.harness import create_connection, create_workspace, session_scope

    domain = f"t-{uuid.uuid4().hex[:10]}.myshopify.com"
    sims.shopify.add_shop(ShopSpec(domain=domain, products=2, customers=2, orders=5, days=3))
    tokens = sims.shopify.issue_tokens(domain)
    shop_creds = Credentials(
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
        expires_at=datetime.now(UTC) + timedelta(seconds=tokens["expires_in"]),
    )
    async with session_scope() as session:
        ws = await create_workspace(session, "upkeep")
        shop = await create_connection(
            session, ws.id, "shopify", domain, shop_creds, config={"shop_domain": domain}
        )
        google = await create_connection(
            session,
            ws.id,
            "google",
            CHILD_NY_ID,
            Credentials(refresh_token=DEFAULT_REFRESH_TOKEN),
            config={"login_customer_id": MANAGER_ID},
        )
        # Paused: a store nobody syncs this week must still work when it is resumed.
        await session.execute(
            text("UPDATE connections SET status = 'paused' WHERE id = :c"),
            {"c": shop.id},
        )
    return shop.id, google.id, domain


async def test_a_shopify_store_and_a_google_account_stay_connected_through_a_simulated_week(
    sims: Sims, run_worker: Any, redis_client: Any
) -> None:
    shop, google, domain = await _connections(sims)
    sims.google.mint(IDLE_CONTROL)  # a refresh token used once, then left alone: the control
    start = datetime.now(UTC)
    steps = 7 * 24 // STEP_H
    for step in range(1, steps + 1):
        sims.advance(STEP_H)  # every Shopify access token issued so far has expired
        tick = (start + timedelta(hours=step * STEP_H)).isoformat()
        job = JobRequest("scheduled_token_upkeep", f"cron:token_upkeep:{tick}", kwargs={"tick": tick})
        await enqueue_many(redis_client, [job])
        await run_worker()
        for conn in (shop, google):
            row = await fetch_one(
                "SELECT sync_status, last_sync_error FROM connections WHERE id = :c", c=conn
            )
            assert row.sync_status == "idle", (step, conn, row.last_sync_error)

    # Shopify: the stored pair is the live one (every rotation stored, none lost), no invalid_grant.
    stored = await load_credentials(shop)
    assert sims.shopify.token_shop(stored.access_token or "") == domain
    assert stored.refresh_token in sims.shopify.refresh_tokens
    assert sims.shopify.stats["rotations"] >= steps and sims.shopify.stats.get("invalid_grant", 0) == 0
    # Google: the connection's refresh token was used daily and still mints; the idle one was revoked.
    assert DEFAULT_REFRESH_TOKEN not in sims.google.revoked
    assert IDLE_CONTROL in sims.google.revoked or sims.google.idle_revoked(IDLE_CONTROL)
    async with httpx.AsyncClient() as http:
        form = {
            "grant_type": "refresh_token",
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
            "refresh_token": DEFAULT_REFRESH_TOKEN,
        }
        minted = await http.post(os.environ["METRICX_GOOGLE_TOKEN_URL"], data=form)
    assert minted.status_code == 200, minted.text


def test_only_credentials_that_cannot_be_refreshed_expire_soon() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def state(expires_in_days: float | None, refreshable: bool = False, present: bool = True) -> str:
        expires = None if expires_in_days is None else now + timedelta(days=expires_in_days)
        return credential_state(
            present=present, expires_at=expires, refreshable=refreshable, now=now, soon_days=7
        )

    assert state(30) == "ok" and state(None) == "ok"
    assert state(6) == "expires_soon" and state(-1) == "expired"
    assert state(0.01, refreshable=True) == "ok"  # refreshed by the upkeep, never "expires soon"
    assert state(None, present=False) == "missing"


async def test_a_meta_like_token_nearing_expiry_shows_expires_soon_in_the_api(
    api: httpx.AsyncClient, tenant: Tenant, sim: Any
) -> None:
    soon = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    later = (datetime.now(UTC) + timedelta(days=50)).isoformat()
    near = await connect(api, tenant, sim.url)
    far = await connect(api, tenant, sim.url)
    for conn, expires in ((near, soon), (far, later)):
        put = await api.put(
            tenant.url(f"/connections/{conn['id']}/credentials"),
            json={"access_token": "tp-valid-token", "expires_at": expires},
            headers=tenant.headers,
            params={"catch_up": "false"},
        )
        assert put.status_code == 200, put.text
    one = (await api.get(tenant.url(f"/connections/{near['id']}"), headers=tenant.headers)).json()
    assert one["credentials_state"] == "expires_soon" and one["credentials_expire_at"] is not None
    listed = (await api.get(tenant.url("/connections"), headers=tenant.headers)).json()
    states = {c["id"]: c["credentials_state"] for c in listed["items"]}
    assert states == {near["id"]: "expires_soon", far["id"]: "ok"}


class SlowRefresher(TestProvider):
    """The test provider with a refresh that takes a while and, for some accounts, is refused or
    breaks: how many refreshes run at once is what a fleet's upkeep depends on."""

    name = "upkeeptest"

    def __init__(self) -> None:
        self.in_flight = self.most_in_flight = self.calls = 0

    def refresh_due(
        self, credentials: Credentials, *, last_refresh: datetime | None, now: datetime, horizon: datetime
    ) -> bool:
        return credentials.expires_at is not None and credentials.expires_at <= horizon

    async def refresh_credentials(
        self, ctx: Any, account: Any, credentials: Credentials
    ) -> Credentials | None:
        self.calls += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.05)
            if account.external_account_id.startswith("refused"):
                raise AuthError("refresh token revoked")
            if account.external_account_id.startswith("broken"):
                raise RuntimeError("a provider bug")
            fresh = Credentials(
                access_token="fresh", refresh_token="r2", expires_at=datetime.now(UTC) + timedelta(days=1)
            )
            await ctx.credentials.save(fresh)
            return None
        finally:
            self.in_flight -= 1


async def test_a_pass_refreshes_many_connections_at_once_and_isolates_failures(
    metricx_env: Any, redis_client: Any
) -> None:
    from core.testing.harness import create_connection, create_workspace, session_scope

    provider = SlowRefresher()
    expiring = Credentials(
        access_token="old", refresh_token="r1", expires_at=datetime.now(UTC) + timedelta(minutes=5)
    )
    names = [f"ok-{i}" for i in range(40)] + ["refused-1", "broken-1"]
    async with session_scope() as session:  # an earlier run's, in a reused database
        await session.execute(text("DELETE FROM connections WHERE provider = :p"), {"p": provider.name})
        ws = await create_workspace(session, "upkeep-fleet")
        made = {n: (await create_connection(session, ws.id, provider.name, n, expiring)).id for n in names}
    settings = get_settings()
    async with httpx.AsyncClient() as http:
        ctx = {
            "registry": Registry(providers={provider.name: provider}),
            "redis": redis_client,
            "http": http,
            "settings": settings,
        }
        stats = await token_upkeep(ctx)
    assert (stats["refreshed"], stats["reconnect_required"], stats["failed"]) == (40, 1, 1)
    assert provider.calls == 42
    # several at once, never more than the setting allows
    assert 1 < provider.most_in_flight <= settings.token_upkeep_concurrency
    for name, conn in made.items():
        stored = await load_credentials(conn)
        row = await fetch_one("SELECT sync_status FROM connections WHERE id = :c", c=conn)
        if name.startswith("ok"):
            assert (stored.access_token, stored.refresh_token, row.sync_status) == ("fresh", "r2", "idle")
        else:  # the refused one needs a reconnect; the broken one is tried again next pass
            assert stored.access_token == "old"
            assert row.sync_status == ("reconnect_required" if name.startswith("refused") else "idle")


async def test_tokens_of_a_connect_flow_never_picked_are_erased_by_the_next_upkeep(
    metricx_env: Any, redis_client: Any
) -> None:
    """A flow that reached its callback holds the platform's tokens until accounts are picked; one
    that lapses unpicked loses them at the next upkeep pass, not only when another flow starts."""
    from core.crypto import encrypt
    from core.db.models import ConnectSession
    from core.testing.harness import create_workspace, session_scope

    async with session_scope() as session:
        ws = await create_workspace(session, "lapsed-flow")
        flows = {}
        for name, expires in (("lapsed", timedelta(seconds=-1)), ("live", timedelta(minutes=10))):
            flow = ConnectSession(
                workspace_id=ws.id,
                provider="meta",
                state_digest=uuid.uuid4().hex,
                status="authorized",
                access_token_enc=encrypt(f"{name}-token"),
                expires_at=datetime.now(UTC) + expires,
            )
            session.add(flow)
            await session.flush()
            flows[name] = flow.id
    async with httpx.AsyncClient() as http:
        await token_upkeep({"registry": Registry(), "redis": redis_client, "http": http})
    for name, flow_id in flows.items():
        row = await fetch_one("SELECT access_token_enc FROM connect_sessions WHERE id = :i", i=flow_id)
        assert (row.access_token_enc is None) == (name == "lapsed"), name
