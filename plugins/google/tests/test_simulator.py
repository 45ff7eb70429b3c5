"""The simulator is faithful to the Google Ads REST API and its ground truth is exact."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from conftest import FROZEN_NOW
from metricx_google.simulator import (
    CHILD_BERLIN_ID,
    CHILD_NY_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_REFRESH_TOKEN,
    MANAGER_ID,
    Account,
    truth,
)
from metricx_google.simulator.gaql import QueryError, parse

METRICS_QUERY = (
    "SELECT campaign.id, segments.date, metrics.impressions, metrics.clicks, metrics.cost_micros, "
    "metrics.conversions, metrics.conversions_value FROM campaign "
    "WHERE segments.date BETWEEN '2026-03-01' AND '2026-03-10'"
)


async def _token(http: httpx.AsyncClient) -> str:
    form = {
        "grant_type": "refresh_token",
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "refresh_token": DEFAULT_REFRESH_TOKEN,
    }
    response = await http.post("/token", data=form)
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3599
    assert "refresh_token" not in body
    return str(body["access_token"])


async def _call(http, path, query=None, *, login=MANAGER_ID, token=None, **extra):
    headers = {"Authorization": f"Bearer {token or await _token(http)}"}
    if login:
        headers["login-customer-id"] = login
    body = {"query": query, **extra} if query else None
    if body is None:
        return await http.get(path, headers=headers)
    return await http.post(path, json=body, headers=headers)


async def test_token_endpoint_errors(http) -> None:
    bad = await http.post(
        "/token", data={"grant_type": "refresh_token", "client_id": "x", "client_secret": "y"}
    )
    assert (bad.status_code, bad.json()["error"]) == (401, "invalid_client")
    await http.post("/_sim/revoke", json={"refresh_token": DEFAULT_REFRESH_TOKEN})
    form = {
        "grant_type": "refresh_token",
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "refresh_token": DEFAULT_REFRESH_TOKEN,
    }
    revoked = await http.post("/token", data=form)
    assert revoked.status_code == 400
    assert revoked.json() == {
        "error": "invalid_grant",
        "error_description": "Token has been expired or revoked.",
    }


async def test_search_rows_look_like_google(http) -> None:
    response = await _call(http, f"/v26/customers/{CHILD_NY_ID}/googleAds:search", METRICS_QUERY)
    assert response.status_code == 200 and response.headers["request-id"]
    body = response.json()
    assert "nextPageToken" not in body
    assert body["fieldMask"].split(",")[-2:] == ["metrics.conversions", "metrics.conversionsValue"]
    row = body["results"][0]
    assert row["campaign"]["resourceName"] == f"customers/{CHILD_NY_ID}/campaigns/{row['campaign']['id']}"
    metrics = row["metrics"]
    assert isinstance(row["campaign"]["id"], str)
    assert all(isinstance(metrics[k], str) for k in ("impressions", "clicks", "costMicros"))
    assert isinstance(metrics["conversions"], float) and isinstance(metrics["conversionsValue"], float)
    assert "segments" in row and row["segments"]["date"].startswith("2026-03")


async def test_zero_rows_are_omitted(http, sim) -> None:
    response = await _call(
        http,
        f"/v26/customers/{CHILD_NY_ID}/googleAds:search",
        "SELECT ad_group_ad.ad.id, segments.date, metrics.impressions FROM ad_group_ad "
        "WHERE segments.date BETWEEN '2026-03-01' AND '2026-03-09'",
    )
    rows = response.json()["results"]
    # Ads with no delivery on a day have no row at all, and every row returned has numbers.
    assert len(rows) < len(sim.accounts[CHILD_NY_ID].entities("ad")) * 9
    expected = truth(sim.accounts[CHILD_NY_ID], "ad", date(2026, 3, 1), date(2026, 3, 9), FROZEN_NOW)
    assert len(rows) == len(expected)
    assert all(int(r["metrics"]["impressions"]) > 0 for r in rows)


async def test_search_stream_batches_and_array_wrapped_errors(http) -> None:
    token = await _token(http)
    ok = await _call(http, f"/v26/customers/{CHILD_NY_ID}/googleAds:searchStream", METRICS_QUERY, token=token)
    batches = ok.json()
    assert isinstance(batches, list) and batches[0]["requestId"] and batches[0]["results"]
    manager = await _call(
        http, f"/v26/customers/{MANAGER_ID}/googleAds:searchStream", METRICS_QUERY, token=token, login=None
    )
    assert manager.status_code == 400
    error = manager.json()[0]["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    failure = error["details"][0]
    assert failure["@type"].endswith("v26.errors.GoogleAdsFailure")
    assert failure["errors"][0]["errorCode"] == {"queryError": "REQUESTED_METRICS_FOR_MANAGER"}


async def test_child_needs_the_managers_login_customer_id(http) -> None:
    token = await _token(http)
    path = f"/v26/customers/{CHILD_BERLIN_ID}/googleAds:search"
    query = "SELECT customer.id FROM customer"
    for login in (None, CHILD_NY_ID):
        denied = await _call(http, path, query, token=token, login=login)
        assert denied.status_code == 403
        code = denied.json()["error"]["details"][0]["errors"][0]["errorCode"]
        assert code == {"authorizationError": "USER_PERMISSION_DENIED"}
    assert (await _call(http, path, query, token=token)).status_code == 200


async def test_page_tokens_are_bound_to_the_query(http) -> None:
    await http.post(
        "/_sim/accounts",
        json={
            "customer_id": "5000000001",
            "campaigns": 10,
            "ad_groups_per_campaign": 50,
            "ads_per_ad_group": 25,
        },
    )
    token = await _token(http)
    path = "/v26/customers/5000000001/googleAds:search"
    query = "SELECT ad_group_ad.ad.id FROM ad_group_ad"
    first = (await _call(http, path, query, token=token, login=None)).json()
    assert len(first["results"]) == 10_000 and first["nextPageToken"]
    other = await _call(
        http, path, query + " LIMIT 20000", token=token, login=None, pageToken=first["nextPageToken"]
    )
    assert other.status_code == 400
    code = other.json()["error"]["details"][0]["errors"][0]["errorCode"]
    assert code == {"requestError": "INVALID_PAGE_TOKEN"}
    second = (
        await _call(http, path, query, token=token, login=None, pageToken=first["nextPageToken"])
    ).json()
    assert len(second["results"]) == 2_500 and "nextPageToken" not in second
    sized = await _call(http, path, query, token=token, login=None, pageSize=100)
    assert sized.status_code == 400


async def test_list_accessible_customers(http) -> None:
    response = await _call(http, "/v26/customers:listAccessibleCustomers", login=None)
    assert response.json() == {"resourceNames": [f"customers/{MANAGER_ID}"]}


async def test_expired_and_unknown_access_tokens(http) -> None:
    token = await _token(http)
    await http.post("/_sim/expire_tokens")
    path = f"/v26/customers/{CHILD_NY_ID}/googleAds:search"
    expired = await _call(http, path, "SELECT customer.id FROM customer", token=token)
    assert expired.status_code == 401
    code = expired.json()["error"]["details"][0]["errors"][0]["errorCode"]
    assert code == {"authenticationError": "OAUTH_TOKEN_EXPIRED"}
    unknown = await _call(http, path, "SELECT customer.id FROM customer", token="ya29.nope")
    assert unknown.json()["error"]["details"][0]["errors"][0]["errorCode"]["authenticationError"] == (
        "OAUTH_TOKEN_INVALID"
    )


async def test_rate_limit_envelope(http) -> None:
    await http.post("/_sim/faults", json={"kind": "throttle", "count": 1, "retry_after_s": 37})
    response = await _call(
        http, f"/v26/customers/{CHILD_NY_ID}/googleAds:search", "SELECT customer.id FROM customer"
    )
    assert response.status_code == 429
    error = response.json()["error"]["details"][0]["errors"][0]
    assert error["errorCode"] == {"quotaError": "RESOURCE_TEMPORARILY_EXHAUSTED"}
    assert error["details"]["quotaErrorDetails"]["retryDelay"] == "37s"


async def test_ground_truth_endpoint(http, sim) -> None:
    response = await http.get(
        "/_sim/truth",
        params={
            "customer": CHILD_BERLIN_ID,
            "level": "ad_group",
            "since": "2026-03-01",
            "until": "2026-03-10",
        },
    )
    body = response.json()
    assert body["currency_code"] == "EUR" and body["today"] == "2026-03-10"
    expected = truth(
        sim.accounts[CHILD_BERLIN_ID], "ad_group", date(2026, 3, 1), date(2026, 3, 10), FROZEN_NOW
    )
    assert len(body["rows"]) == len(expected)
    row = body["rows"][0]
    numbers = expected[(row["entity_id"], date.fromisoformat(row["date"]))]
    assert Decimal(row["conversions"]) == numbers.conversions
    assert Decimal(row["spend"]) == Decimal(numbers.cost_micros) / 1_000_000


def test_conversions_grow_for_90_days_then_settle() -> None:
    account = Account("6000000001", "Lag", "UTC", campaigns=2, ad_groups_per_campaign=2, ads_per_ad_group=3)
    day = date(2026, 1, 1)

    def conversions(now_day: date) -> Decimal:
        now = datetime.combine(now_day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=23)
        rows = truth(account, "campaign", day, day, now)
        return sum((n.conversions for n in rows.values()), Decimal(0))

    seen = [conversions(day + timedelta(days=d)) for d in (0, 1, 7, 30, 89)]
    assert seen == sorted(seen) and seen[0] < seen[-1]
    assert conversions(day + timedelta(days=90)) == conversions(day + timedelta(days=200))
    assert conversions(day + timedelta(days=8)) > conversions(day + timedelta(days=5))


def test_today_grows_with_local_time_of_day() -> None:
    account = Account("6000000002", "Today", "Europe/Berlin")
    day = date(2026, 3, 10)
    morning = truth(account, "campaign", day, day, datetime(2026, 3, 10, 6, tzinfo=UTC))
    evening = truth(account, "campaign", day, day, datetime(2026, 3, 10, 20, tzinfo=UTC))
    assert sum(n.impressions for n in morning.values()) < sum(n.impressions for n in evening.values())
    # 23:30 UTC on the 9th is already the 10th in Berlin.
    early = truth(account, "campaign", day, day, datetime(2026, 3, 9, 23, 30, tzinfo=UTC))
    assert early and sum(n.impressions for n in early.values()) < sum(n.impressions for n in morning.values())


def test_gaql_parser() -> None:
    query = parse(METRICS_QUERY)
    assert query.resource == "campaign" and query.date_range() == (date(2026, 3, 1), date(2026, 3, 10))
    with pytest.raises(QueryError) as caught:
        parse("SELECT campaign.id, segments.date, metrics.clicks FROM campaign")
    assert caught.value.code == "EXPECTED_FILTERS_ON_DATE_RANGE"
    with pytest.raises(QueryError):
        parse("SELECT ad_group.id FROM campaign")
    filtered = parse(
        "SELECT campaign.id FROM campaign WHERE campaign.status IN ('ENABLED', 'PAUSED') LIMIT 5"
    )
    assert filtered.conditions[0].values == ("ENABLED", "PAUSED") and filtered.limit == 5


async def test_reset_and_stats(http, sim) -> None:
    await _token(http)
    assert (await http.get("/_sim/stats")).json()["token_mints"] == 1
    await http.post("/_sim/reset")
    stats = (await http.get("/_sim/stats")).json()
    assert stats["token_mints"] == 0 and stats["api_calls"] == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_runs_as_a_real_server() -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "metricx_google.simulator", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{base}/_sim/stats", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, "simulator exited"
                assert time.monotonic() < deadline, "simulator did not start"
                time.sleep(0.1)
        with httpx.Client(base_url=base, timeout=10) as http:
            token = http.post(
                "/token",
                data={
                    "grant_type": "refresh_token",
                    "client_id": DEFAULT_CLIENT_ID,
                    "client_secret": DEFAULT_CLIENT_SECRET,
                    "refresh_token": DEFAULT_REFRESH_TOKEN,
                },
            ).json()["access_token"]
            response = http.post(
                f"/v26/customers/{CHILD_BERLIN_ID}/googleAds:searchStream",
                json={
                    "query": "SELECT customer.id, customer.time_zone, customer.currency_code FROM customer"
                },
                headers={"Authorization": f"Bearer {token}", "login-customer-id": MANAGER_ID},
            )
            customer = json.loads(response.content)[0]["results"][0]["customer"]
            assert customer == {
                "resourceName": f"customers/{CHILD_BERLIN_ID}",
                "id": CHILD_BERLIN_ID,
                "timeZone": "Europe/Berlin",
                "currencyCode": "EUR",
            }
            assert http.get("/_sim/stats").json()["token_mints"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _error_code(response: httpx.Response) -> dict[str, str]:
    return response.json()["error"]["details"][0]["errors"][0]["errorCode"]


async def test_shared_throttle_at_developer_scope_is_the_daily_quota(http) -> None:
    token = await _token(http)
    path = f"/v26/customers/{CHILD_NY_ID}/googleAds:search"
    fault = {"kind": "throttle", "scope": "developer", "account": CHILD_NY_ID, "retry_after_s": 600}
    await http.post("/_sim/faults", json=fault)
    other = await _call(
        http,
        f"/v26/customers/{CHILD_BERLIN_ID}/googleAds:search",
        "SELECT customer.id FROM customer",
        token=token,
    )
    assert other.status_code == 200
    response = await _call(http, path, "SELECT customer.id FROM customer", token=token)
    assert response.status_code == 429 and _error_code(response) == {"quotaError": "RESOURCE_EXHAUSTED"}
    quota = response.json()["error"]["details"][0]["errors"][0]["details"]["quotaErrorDetails"]
    assert (quota["rateScope"], quota["retryDelay"]) == ("DEVELOPER", "600s")
    logged = (await http.get("/_sim/requests", params={"path": "googleAds"})).json()["requests"]
    assert [(e["account"], e["status"]) for e in logged] == [(CHILD_BERLIN_ID, 200), (CHILD_NY_ID, 429)]


async def test_shared_token_faults_and_expiry_in_simulated_time(http) -> None:
    path, query = f"/v26/customers/{CHILD_NY_ID}/googleAds:search", "SELECT customer.id FROM customer"
    token = await _token(http)
    await http.post("/_sim/faults", json={"kind": "token_expired"})
    assert _error_code(await _call(http, path, query, token=token)) == {
        "authenticationError": "OAUTH_TOKEN_EXPIRED"
    }
    assert (await _call(http, path, query, token=token)).status_code == 200
    await http.post("/_sim/clock", json={"advance_s": 3600})  # the access token lives 3599 s
    assert _error_code(await _call(http, path, query, token=token)) == {
        "authenticationError": "OAUTH_TOKEN_EXPIRED"
    }
    await http.post("/_sim/faults", json={"kind": "token_revoked"})
    form = {
        "grant_type": "refresh_token",
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "refresh_token": DEFAULT_REFRESH_TOKEN,
    }
    refused = await http.post("/token", data=form)
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")


async def test_shared_version_sunset_gets_googles_answers(http) -> None:
    token, query = await _token(http), "SELECT customer.id FROM customer"
    await http.post("/_sim/faults", json={"kind": "version_sunset", "version": "v22", "count": None})
    current = await _call(http, f"/v23/customers/{CHILD_NY_ID}/googleAds:search", query, token=token)
    assert current.status_code == 200
    sunset = await _call(http, f"/v22/customers/{CHILD_NY_ID}/googleAds:search", query, token=token)
    assert sunset.status_code == 400 and _error_code(sunset) == {"requestError": "UNSUPPORTED_VERSION"}
    await http.delete("/_sim/faults")
    await http.post("/_sim/faults", json={"kind": "version_sunset", "answer": "not_found"})
    gone = await _call(http, f"/v22/customers/{CHILD_NY_ID}/googleAds:search", query, token=token)
    assert gone.status_code == 404 and gone.headers["content-type"].startswith("text/plain")
