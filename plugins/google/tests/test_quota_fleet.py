"""A simulated day of realtime cycles for 30 Google connections under one Explorer developer token:
the operation budget paces them, Google never answers RESOURCE_EXHAUSTED, and the numbers are right.

Real PostgreSQL, Redis, worker jobs and the simulator over HTTP; time is the simulator's clock (the
provider's budget and pacing follow it), advanced 15 minutes per realtime tick over one quota day
(midnight to midnight Pacific). Each tick plays the fan-out: it asks the provider's pacing
(``realtime_pause``, what the engine asks in every realtime sync) and enqueues the connections that
are due; the engine path of a skipped tick is tested in test_worker_e2e.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from metricx_google.simulator import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_REFRESH_TOKEN,
    MANAGER_ID,
    SimState,
    create_app,
    truth,
)
from sqlalchemy import text

from core import AccountRef, Credentials, SyncMode, provider_context
from core.testing.harness import (
    create_connection,
    create_workspace,
    enqueue_sync_job,
    get_registry,
    session_scope,
)
from core.testing.http import serve_app
from core.testing.plugin import plugin_environment

FLEET = 30


def token_of(state: SimState) -> str:
    """The developer token the fleet's calls carried (the one the simulator counted)."""
    return next(token for token, _ in state.operations if token.startswith("dev-fleet-"))


EXPLORER = 2_880
CANDIDATE_ZONES = ("America/Los_Angeles", "America/New_York", "Europe/Berlin", "Asia/Kolkata", "Asia/Tokyo")


def _zone() -> str:
    """A time zone whose real local time leaves hours before midnight (the engine's "today" is real)."""
    now = datetime.now(UTC)
    for name in CANDIDATE_ZONES:
        if 2 <= now.astimezone(ZoneInfo(name)).hour <= 18:
            return name
    return "Pacific/Auckland"


PACIFIC = ZoneInfo("America/Los_Angeles")


def _pacific_midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=PACIFIC)


@pytest.fixture
def fleet_sim(metricx_env: Any) -> Iterator[tuple[SimState, str, str]]:
    zone = _zone()
    local_today = datetime.now(ZoneInfo(zone)).date()  # the engine's "today" for these accounts
    # The quota day that starts on that date (its whole day falls on or after the accounts' date).
    state = SimState(now=_pacific_midnight(local_today).astimezone(UTC) + timedelta(minutes=1))
    state.token_lifetime_s = 10**7  # the day is simulated; access tokens are cached in real time
    state.daily_operations = EXPLORER  # Google's quota for this developer token
    for i in range(FLEET):
        state.add_account(
            {
                "customer_id": f"{7000000000 + i}",
                "manager_id": MANAGER_ID,
                "time_zone": zone,
                "campaigns": 2,
                "ad_groups_per_campaign": 1,
                "ads_per_ad_group": 2,
                "pmax_campaigns": 1,
            }
        )
    token = f"dev-fleet-{uuid.uuid4().hex[:8]}"
    with serve_app(create_app(state)) as url:
        env = {
            "METRICX_GOOGLE_BASE_URL": url,
            "METRICX_GOOGLE_TOKEN_URL": f"{url}/token",
            "METRICX_GOOGLE_CLIENT_ID": DEFAULT_CLIENT_ID,
            "METRICX_GOOGLE_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
            "METRICX_GOOGLE_DEVELOPER_TOKEN": token,
            "METRICX_GOOGLE_ACCESS_LEVEL": "explorer",
        }
        with plugin_environment(env, redis_url=metricx_env.redis_url):
            get_registry().providers["google"].clock = state.now  # type: ignore[attr-defined]
            yield state, url, zone


async def _connections(state: SimState) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
    out = []
    async with session_scope() as session:
        ws = await create_workspace(session, f"google-fleet-{uuid.uuid4().hex[:6]}")
        for customer in sorted(c for c in state.accounts if c.startswith("7")):
            conn = await create_connection(
                session,
                ws.id,
                "google",
                customer,
                Credentials(refresh_token=DEFAULT_REFRESH_TOKEN),
                config={"login_customer_id": MANAGER_ID},
            )
            out.append((ws.id, conn.id, customer))
    return out


async def _tick(
    conns: list[tuple[uuid.UUID, uuid.UUID, str]], slot: str, run_worker: Any, redis: Any, zone: str
) -> list[str]:
    """One realtime tick: the due connections sync through the worker; the others' reasons."""
    provider = get_registry().providers["google"]
    reasons = []
    async with httpx.AsyncClient() as client:
        for ws, conn, customer in conns:
            ctx = provider_context(redis=redis, client=client, provider="google", account=customer)
            config = {"login_customer_id": MANAGER_ID}
            account = AccountRef(str(conn), str(ws), customer, timezone=zone, config=config)
            reason = await provider.realtime_pause(ctx, account)  # type: ignore[attr-defined]
            if reason:
                reasons.append(reason)
            else:
                await enqueue_sync_job(str(conn), str(ws), mode=SyncMode.realtime, slot=slot, redis=redis)
    await run_worker()
    return reasons


async def _rows(sql: str, **params: Any) -> list[Any]:
    async with session_scope() as session:
        return list((await session.execute(text(sql), params)).all())


@pytest.mark.slow
@pytest.mark.timeout(3600)
async def test_thirty_connections_live_within_an_explorer_budget_for_a_day(
    fleet_sim: Any, run_worker: Any, redis_client: Any
) -> None:
    state, url, zone = fleet_sim
    conns = await _connections(state)
    ids = [c[1] for c in conns]
    day: date = datetime.now(ZoneInfo(zone)).date()
    reasons: list[str] = []
    skipped_per_tick: list[int] = []
    for _ in range(96):  # 00:01 .. 23:46 Pacific, every 15 minutes
        paced = await _tick(conns, state.now().strftime("%Y%m%d%H%M"), run_worker, redis_client, zone)
        skipped_per_tick.append(len(paced))
        reasons += paced
        state.advance(15 * 60)
    stats = httpx.get(f"{url}/_sim/stats").json()
    # Not one RESOURCE_EXHAUSTED, and no connection ever throttled or failed.
    assert stats.get("quota_exhausted", 0) == 0
    bad = await _rows(
        "SELECT sync_status, last_error_kind FROM connections WHERE id = ANY(:ids) "
        "AND sync_status NOT IN ('idle')",
        ids=ids,
    )
    assert bad == []
    # The cadence degraded visibly: ticks were skipped, each connection said why.
    runs = Counter(
        r.connection_id
        for r in await _rows(
            "SELECT connection_id FROM sync_runs WHERE connection_id = ANY(:ids) AND status = 'complete'",
            ids=ids,
        )
    )
    assert max(skipped_per_tick) > 0 and all(n < 96 for n in runs.values())
    assert any("realtime every 60 min" in r for r in reasons), reasons[:3]
    assert all(
        r.startswith("developer token used ") and f"/{EXPLORER:,} Google Ads operations" in r for r in reasons
    )
    token = token_of(state)
    used = sum(n for (t, _), n in state.operations.items() if t == token)
    assert used <= EXPLORER  # the whole quota day's operations, as Google counted them
    print(f"syncs per connection: {min(runs.values())}..{max(runs.values())} of 96 ticks; operations {used}")
    print("skipped per tick:", skipped_per_tick)

    # The next quota day, 4 hours in (every interval is over): each connection reads the day again,
    # now final (the day is over in every account's time zone).
    state.clock.set(_pacific_midnight(state.now().astimezone(PACIFIC).date()) + timedelta(hours=4, minutes=5))
    assert await _tick(conns, "closing", run_worker, redis_client, zone) == []
    stats = httpx.get(f"{url}/_sim/stats").json()
    assert stats.get("quota_exhausted", 0) == 0
    for _, conn, customer in conns:
        stored = await _rows(
            "SELECT DISTINCT ON (s.entity_id) e.external_id, s.spend, s.impressions, s.clicks, s.conversions "
            "FROM metric_snapshots s JOIN entities e ON e.id = s.entity_id "
            "WHERE s.connection_id = :c AND s.metrics_date = :d AND e.level = 'campaign' "
            "ORDER BY s.entity_id, s.captured_at DESC",
            c=conn,
            d=day,
        )
        expected = truth(state.accounts[customer], "campaign", day, day, state.now())
        got = {r.external_id: r for r in stored}
        assert set(got) == {k[0] for k in expected}, customer
        total = sum((Decimal(n.cost_micros).scaleb(-6) for n in expected.values()), Decimal(0))
        assert sum((r.spend for r in got.values()), Decimal(0)).quantize(Decimal("0.01")) == total.quantize(
            Decimal("0.01")
        )
        for (campaign, _), n in expected.items():
            assert got[campaign].impressions == n.impressions and got[campaign].clicks == n.clicks
