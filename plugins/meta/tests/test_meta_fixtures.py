"""Every fixture of real Meta shapes (plugins/meta/fixtures, each naming its public source) is parsed
by the client and maps to the documented outcome; the simulator answers in the same shapes."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from meta_helpers import BASE_URL, all_fixtures, load_fixture, local_today
from metricx_meta import MetaProvider, MetaSettings
from metricx_meta.client import MetaAPI
from metricx_meta.errors import ReduceDataError, ReportRunFailed, parse_usage
from metricx_meta.insights import to_metrics
from metricx_meta.provider import MARKETING_API_SUNSETS
from metricx_meta.reports import run_failure
from metricx_meta.simulator import DEFAULT_TOKEN, SimState, create_app

from core import RateLimited

TOKEN = "EAAB-fixture-token"
ERRORS = [name for name in all_fixtures() if name.startswith("error_")]
RUNS = [name for name in all_fixtures() if name.startswith("report_run_failed")]
HEADERS = [name for name in all_fixtures() if name.startswith("headers_")]


def response(fixture: dict[str, Any], path: str = "act_1001/insights") -> httpx.Response:
    request = httpx.Request("GET", f"{BASE_URL}/v26.0/{path}")
    return httpx.Response(
        fixture["status"], headers=fixture["headers"], content=json.dumps(fixture["body"]), request=request
    )


def test_every_fixture_names_its_public_source() -> None:
    assert len(all_fixtures()) >= 40
    for name in all_fixtures():
        source = load_fixture(name)["_source"]
        assert "http" in source or "/" in source, name


@pytest.mark.parametrize("name", ERRORS)
def test_error_envelope_maps_by_code(name: str) -> None:
    fixture = load_fixture(name)
    expect = fixture["expect"]
    error = MetaAPI(MetaSettings(throttle_default_retry_s=60), TOKEN).classify(response(fixture))
    assert error is not None and error.kind == expect["kind"], (name, error)
    if "reduce" in expect:
        assert isinstance(error, ReduceDataError) == expect["reduce"], name
    if "certain" in expect:
        assert isinstance(error, ReduceDataError) and error.certain == expect["certain"]
    if "scope" in expect:
        assert isinstance(error, RateLimited) and error.scope == expect["scope"], name
    if "says" in expect:
        assert expect["says"] in error.message, (name, error.message)
    assert TOKEN not in error.message


def test_localised_user_message_does_not_decide() -> None:
    """The Spanish error_user_msg and an "Unknown error" user message map exactly as their codes say."""
    fixture = load_fixture("error_100_1487534_reduce_data.json")
    fixture["body"]["error"]["message"] = "Por favor, reduce la cantidad de datos"
    error = MetaAPI(MetaSettings(), TOKEN).classify(response(fixture))
    assert isinstance(error, ReduceDataError)


@pytest.mark.parametrize("name", RUNS)
def test_failed_report_run_fields_decide_retry_split_or_give_up(name: str) -> None:
    fixture = load_fixture(name)
    expect = fixture["expect"]
    error = run_failure(fixture["body"], default_retry_s=60)
    assert error.kind == expect["kind"], (name, error)
    if "split" in expect:
        assert isinstance(error, ReportRunFailed) == expect["split"], name
    if "scope" in expect:
        assert isinstance(error, RateLimited) and error.scope == expect["scope"]


@pytest.mark.parametrize("name", HEADERS)
def test_usage_headers(name: str) -> None:
    fixture = load_fixture(name)
    usage = parse_usage(httpx.Headers(fixture["headers"]))
    assert usage is not None
    expect = fixture["expect"]
    assert (usage.account_pct, usage.app_pct, usage.regain_s) == (
        expect["account_pct"],
        expect["app_pct"],
        expect["regain_s"],
    )


def test_app_usage_blocks_the_app_scope() -> None:
    fixture = load_fixture("headers_insights_throttle_app.json")
    usage = MetaAPI(MetaSettings(usage_block_pct=95), TOKEN).usage(response(fixture))
    assert usage is not None and usage.scope == "app" and usage.block_s


def test_insights_pages_parse() -> None:
    for name in ("insights_row_actions.json", "insights_last_page.json", "insights_empty.json"):
        body = load_fixture(name)["body"]
        records = to_metrics("campaign" if name == "insights_last_page.json" else "ad", body["data"])
        assert len(records) == len(body["data"])
    [last] = to_metrics("campaign", load_fixture("insights_last_page.json")["body"]["data"])
    assert (last.clicks, last.conversions) == (0, 0)  # fields Meta leaves out read as zero


def test_declared_sunsets_are_the_marketing_api_dates() -> None:
    for row in load_fixture("versions.json")["body"]["versions"]:
        expires = date.fromisoformat(row["expires"]) if row["expires"] else None
        assert MARKETING_API_SUNSETS[row["version"]] == expires, row
    default = MetaProvider(MetaSettings()).api_version
    assert default.version == "v26.0" and default.sunset is None


# --- the simulator answers in the same shapes ------------------------------------------------


def _keys(fixtures: list[str], part: str) -> set[str]:
    keys: set[str] = set()
    for name in fixtures:
        keys |= set(load_fixture(name)["body"][part])
    return keys


@pytest.fixture
def sim_client(sim: SimState) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(sim)), base_url=BASE_URL)


async def test_simulator_errors_have_the_fixture_envelope(sim_client: httpx.AsyncClient) -> None:
    envelope_keys = _keys(ERRORS, "error")
    async with sim_client as client:
        await client.post("/_sim/faults", json={"kind": "throttle", "scope": "app", "count": 1})
        throttled = await client.get("/v26.0/act_1001", params={"access_token": DEFAULT_TOKEN})
        await client.post("/_sim/config", json={"app_secret": "s3cret"})
        no_proof = await client.get("/v26.0/act_1001", params={"access_token": DEFAULT_TOKEN})
    for answer, code in ((throttled, 4), (no_proof, 100)):
        error = answer.json()["error"]
        assert error["code"] == code and set(error) <= envelope_keys, error
        assert {"message", "type", "code", "fbtrace_id"} <= set(error)
    assert (
        no_proof.json()["error"]["message"]
        == load_fixture("error_100_appsecret_required.json")["body"]["error"]["message"]
    )


async def test_simulator_rows_runs_and_headers_have_the_fixture_shapes(
    sim: SimState, sim_client: httpx.AsyncClient
) -> None:
    day = local_today(sim, "1001") - timedelta(days=2)
    params = {
        "access_token": DEFAULT_TOKEN,
        "level": "ad",
        "time_increment": "1",
        "time_range": json.dumps({"since": day.isoformat(), "until": day.isoformat()}),
        "fields": "account_id,account_currency,campaign_id,adset_id,ad_id,ad_name,impressions,clicks,"
        "inline_link_clicks,spend,actions,action_values",
        "limit": "1",
    }
    async with sim_client as client:
        page = await client.get("/v26.0/act_1001/insights", params=params)
        await client.post(
            "/_sim/faults", json={"kind": "async", "error": "too_much_data", "count": 1, "account": "1001"}
        )
        run = (await client.post("/v26.0/act_1001/insights", params=params)).json()["report_run_id"]
        for _ in range(2):  # the run fails on its second poll
            failed = (await client.get(f"/v26.0/{run}", params={"access_token": DEFAULT_TOKEN})).json()
    fixture_row = load_fixture("insights_row_actions.json")["body"]["data"][0]
    row = page.json()["data"][0]
    assert set(row) <= set(fixture_row)  # actions / action_values are left out without any
    assert {"ad_id", "impressions", "clicks", "inline_link_clicks", "spend", "date_start"} <= set(row)
    assert set(page.json()["paging"]) == set(load_fixture("insights_row_actions.json")["body"]["paging"])
    assert all(isinstance(row[k], str) for k in ("impressions", "clicks", "inline_link_clicks", "spend"))
    fixture_failed = load_fixture("report_run_failed_too_much_data.json")["body"]
    assert set(fixture_failed) - {"error_user_title", "error_user_msg"} <= set(failed)
    assert (failed["error_code"], failed["error_subcode"]) == (100, 1487534)
    assert run_failure(failed).kind == "transient"
    headers = {k.lower() for k in load_fixture("headers_usage.json")["headers"]}
    assert headers - {"x-fb-ads-insights-throttle"} <= {k.lower() for k in page.headers}
    assert "x-fb-ads-insights-throttle" in page.headers  # insights calls carry it


async def test_the_client_reads_a_report_run_made_of_fixtures(redis: Any) -> None:
    """The real client, served the fixture bodies in order: start, poll (running, completed), pages."""
    import itertools

    from metricx_meta.reports import fetch_report

    from core import Credentials, provider_context

    polls = itertools.chain(["report_run_running.json"], itertools.repeat("report_run_completed.json"))
    pages = iter(["insights_row_actions.json", "insights_last_page.json"])

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST":
            name = "report_run_started.json"
        elif path.endswith("/insights"):
            name = next(pages)
        else:
            name = next(polls)
        fixture = load_fixture(name)
        return httpx.Response(fixture["status"], headers=fixture["headers"], json=fixture["body"])

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url=BASE_URL) as http:
        ctx = provider_context(redis=redis, client=http, provider="meta", account="1001")
        settings = MetaSettings(base_url=BASE_URL, async_first_poll_s=0, async_poll_interval_s=0)
        client = MetaProvider(settings).client(ctx, Credentials(access_token=TOKEN))
        day = date(2026, 11, 1)
        records = [r async for batch in fetch_report(client, "1001", "campaign", day, day) for r in batch]
    assert [(r.entity_external_id, r.clicks, r.conversions, r.revenue) for r in records] == [
        ("23000100000001", 61, 5, Decimal("250.5")),
        ("23000100000002", 0, 0, 0),
    ]
