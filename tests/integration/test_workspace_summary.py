"""Workspace totals against the simulators' ground truth: a real worker syncs Meta, Google, Shopify and
the test provider (with a PMax-style campaign) over real HTTP; totals, MER, the API and its CSV agree."""

from __future__ import annotations

import asyncio
import csv
import io
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from core.testing.http import serve_app
from tests.conftest import fetch_all
from tests.integration.test_api_support import OPERATOR, api

__all__ = ["api"]  # fixture
pytestmark = pytest.mark.slow

MONEY = ("spend", "revenue")
TODAY = datetime.now(UTC).date()
# Days closed in every simulator's timezone (Los Angeles to Tokyo), so no intraday value moves.
SINCE, UNTIL = TODAY - timedelta(days=10), TODAY - timedelta(days=3)
TP_ACCOUNTS = {"tp-usd": "USD", "tp-eur": "EUR"}


def _days() -> list[str]:
    return [(SINCE + timedelta(days=i)).isoformat() for i in range((UNTIL - SINCE).days + 1)]


def _zero() -> dict[str, Decimal]:
    return defaultdict(Decimal)


@pytest.fixture(scope="module")
def simulators() -> Iterator[dict[str, str]]:
    """Meta, Google and Shopify simulators served over real HTTP: {provider: base URL}."""
    from metricx_google.simulator import SimState as GoogleState
    from metricx_google.simulator.app import create_app as google_app
    from metricx_meta.simulator import SimState as MetaState
    from metricx_meta.simulator import create_app as meta_app
    from metricx_shopify.simulator import create_plus_app as shopify_app  # data, not cost pacing

    # Clocks frozen: Meta's and Google's conversions for closed days still mature minute by minute, so
    # the truth read after the syncs would otherwise count a few more than the syncs fetched.
    now = datetime.now(UTC)
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(serve_app(factory()))
            for name, factory in (
                ("meta", lambda: meta_app(MetaState(now=now))),
                ("google", lambda: google_app(GoogleState(now=now))),
                ("shopify", shopify_app),
            )
        }


async def _connections(workspace_id: uuid.UUID, urls: dict[str, str], tp_url: str) -> list[Any]:
    """Every demo account of the three simulators that syncs normally, plus two test-provider ones."""
    from metricx_google.demo import SIMULATOR as GOOGLE
    from metricx_meta.demo import SIMULATOR as META
    from metricx_shopify.demo import SIMULATOR as SHOPIFY

    from core.db.engine import session_scope
    from core.providers import Credentials
    from core.services import create_connection

    made = []
    async with session_scope() as session:
        for spec in (META, GOOGLE, SHOPIFY):
            for demo in spec.demo_connections(urls[spec.provider]):
                if demo.role == "reconnect":
                    continue
                conn = await create_connection(
                    session,
                    workspace_id,
                    spec.provider,
                    demo.external_account_id,
                    demo.credentials,
                    name=demo.name,
                    config=dict(demo.config),
                )
                made.append(conn)
        for account in TP_ACCOUNTS:
            creds = Credentials(access_token="tp-valid-token")
            config = {"base_url": tp_url}
            made.append(
                await create_connection(session, workspace_id, "testprovider", account, creds, config=config)
            )
    return made


async def _sync_all(conns: list[Any], workspace_id: uuid.UUID, redis: Any) -> None:
    from core.enqueue import enqueue_sync_job

    for conn in conns:
        await enqueue_sync_job(str(conn.id), str(workspace_id), backfill=True, redis=redis)
    deadline = time.monotonic() + 240
    while True:
        rows = await fetch_all(
            "SELECT name, sync_status, total_syncs_succeeded, last_sync_error FROM connections "
            "WHERE workspace_id = :w",
            w=workspace_id,
        )
        failed = [r for r in rows if r.sync_status in ("error", "reconnect_required")]
        assert not failed, failed
        if all(r.total_syncs_succeeded >= 1 and r.sync_status == "idle" for r in rows):
            return
        assert time.monotonic() < deadline, rows
        await asyncio.sleep(0.5)


def _truth(urls: dict[str, str], tp_url: str, conns: list[Any]) -> tuple[dict[str, Any], dict[str, Decimal]]:
    """Ground truth per currency over SINCE..UNTIL: ({currency: ad totals}, {currency: store revenue})."""
    ads: dict[str, dict[str, Decimal]] = defaultdict(_zero)
    store: dict[str, Decimal] = defaultdict(Decimal)
    window = {"since": SINCE.isoformat(), "until": UNTIL.isoformat()}
    for conn in conns:
        account, currency = conn.external_account_id, conn.currency
        if conn.provider == "shopify":
            daily = httpx.get(f"{urls['shopify']}/_sim/truth", params={"shop": account}).json()["daily"]
            store[currency] += sum(
                (Decimal(daily[d]["net_sales"]) for d in _days() if d in daily), Decimal(0)
            )
            continue
        if conn.provider == "testprovider":
            body = httpx.get(f"{tp_url}/_sim/truth", params={"account": account, **window}).json()
            rows = list(body["days"].values())
        else:
            params = {"account": account, "level": "campaign", **window}
            rows = httpx.get(f"{urls[conn.provider]}/_sim/truth", params=params).json()["rows"]
        for row in rows:
            ads[currency]["spend"] += Decimal(row["spend"])
            ads[currency]["revenue"] += Decimal(row.get("revenue", row.get("conversions_value", 0)))
            ads[currency]["conversions"] += Decimal(row["conversions"])
            ads[currency]["impressions"] += int(row["impressions"])
            ads[currency]["clicks"] += int(row["clicks"])
    return ads, store


def _ad_numbers(totals: Any) -> dict[str, Decimal]:
    return {
        k: Decimal(getattr(totals, k)) for k in ("spend", "impressions", "clicks", "conversions", "revenue")
    }


async def test_totals_equal_the_simulators_truth_per_currency_with_mer_and_pmax(
    simulators: dict[str, str],
    sim: Any,
    worker_process: Any,
    redis_client: Any,
    api: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from metricx_google.demo import worker_env as google_env
    from metricx_meta.demo import worker_env as meta_env
    from metricx_shopify.demo import worker_env as shopify_env

    from core.db.engine import session_scope
    from core.plugins import get_registry
    from core.services import create_api_key, create_workspace
    from core.services.summary import CurrencyRates, workspace_summary

    sim.control(campaign_rows=True, pmax_campaigns=1, currencies=TP_ACCOUNTS)
    # In this shape (campaign rows, a campaign with no ads) only the campaign level covers all
    # spend, as with Google's Performance Max: the provider declares it, as Google's does.
    provider = get_registry().providers["testprovider"]
    monkeypatch.setattr(provider, "capabilities", replace(provider.capabilities, primary_level="campaign"))
    env = {
        **meta_env(simulators["meta"]),
        **google_env(simulators["google"]),
        **shopify_env(simulators["shopify"]),
    }
    worker_process(**env)
    async with session_scope() as session:
        ws = await create_workspace(session, f"totals-{uuid.uuid4().hex[:6]}")
        _, key = await create_api_key(session, ws.id, "tests")
    conns = await _connections(ws.id, simulators, sim.url)
    await _sync_all(conns, ws.id, redis_client)
    conns = await fetch_all(
        "SELECT id, provider, external_account_id, currency FROM connections WHERE workspace_id = :w", w=ws.id
    )
    assert {c.currency for c in conns} >= {"USD", "EUR", "JPY", "INR"}
    ads, store = _truth(simulators, sim.url, conns)

    async with session_scope() as session:
        summary = await workspace_summary(session, ws.id, SINCE, UNTIL)
    by_currency = {c.currency: c for c in summary.currencies}
    assert set(by_currency) == set(ads) | set(store)
    for currency, numbers in ads.items():
        assert _ad_numbers(by_currency[currency].ads) == dict(numbers), currency
    for currency, revenue in store.items():
        assert by_currency[currency].store_revenue == revenue > 0, currency
    usd = by_currency["USD"]
    assert usd.mer == (store["USD"] / ads["USD"]["spend"]).quantize(Decimal("0.0001"))

    # The PMax-style campaign has spend at campaign level only, and it is counted.
    from metricx_testprovider.simulator import ad_numbers

    tp = {p.currency: p for p in summary.providers if p.provider == "testprovider"}
    pmax = sum(
        (Decimal(ad_numbers("tp-usd", "pmax0", SINCE + timedelta(days=i))["spend"]) for i in range(8)),
        Decimal(0),
    )
    tp_truth = httpx.get(
        f"{sim.url}/_sim/truth", params={"account": "tp-usd", "since": SINCE, "until": UNTIL}
    ).json()
    assert tp["USD"].totals.spend == sum((Decimal(d["spend"]) for d in tp_truth["days"].values()), Decimal(0))
    assert pmax > 0 and tp["USD"].level == "campaign"
    assert tp["USD"].roas == (tp["USD"].totals.revenue / tp["USD"].totals.spend).quantize(Decimal("0.0001"))

    # Converted totals: only with a rate for every currency, labelled as converted.
    rates = CurrencyRates("USD", {"EUR": Decimal("1.1"), "JPY": Decimal("0.0067"), "INR": Decimal("0.012")})
    async with session_scope() as session:
        converted = (await workspace_summary(session, ws.id, SINCE, UNTIL, rates=rates)).converted
        partial = await workspace_summary(
            session, ws.id, SINCE, UNTIL, rates=CurrencyRates("USD", {"EUR": Decimal(1)})
        )
    assert converted is not None and converted.converted and converted.currency == "USD"
    expected = sum((ads[c]["spend"] * rates.rate(c, SINCE) for c in ads), Decimal(0))  # type: ignore[operator]
    assert converted.ads.spend == expected
    assert partial.converted is None and any(m.startswith("JPY@") for m in partial.missing_rates)

    # The API says the same, and its CSV is the same rows.
    headers = {"Authorization": f"Bearer {key}"}
    url = f"/v1/workspaces/{ws.id}/metrics/summary"
    params = {"since": SINCE.isoformat(), "until": UNTIL.isoformat()}
    body = (await api.get(url, params=params, headers=headers)).json()
    assert {c["currency"]: Decimal(c["ads"]["spend"]) for c in body["currencies"]} == {
        c: n["spend"] for c, n in ads.items()
    } | {c: Decimal(0) for c in store if c not in ads}
    assert {c["currency"]: Decimal(c["store_revenue"]) for c in body["currencies"]} == {
        c.currency: c.store_revenue for c in summary.currencies
    }
    assert (
        Decimal(body["currencies"][[c["currency"] for c in body["currencies"]].index("USD")]["mer"])
        == usd.mer
    )
    response = await api.get(url, params={**params, "format": "csv"}, headers=headers)
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == len(body["days"]) > 0
    for row, day in zip(rows, body["days"], strict=True):
        assert row["metrics_date"] == day["metrics_date"] and row["provider"] == day["provider"]
        assert row["currency"] == day["currency"]
        for k in ("spend", "conversions", "revenue"):
            assert Decimal(row[k]) == Decimal(day[k])
        assert int(row["impressions"]) == day["impressions"] and int(row["clicks"]) == day["clicks"]
    other = await api.get(url, params=params, headers=OPERATOR)
    assert other.status_code in (401, 403, 404)  # an operator key is not a workspace's key
