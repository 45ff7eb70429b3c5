"""The simulator behaves like the Graph API: strings, paging, hidden removed objects, limits, headers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from meta_helpers import local_today
from metricx_meta.simulator import DEFAULT_TOKEN, SimState, truth

AUTH = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}


def insights_params(since: date, until: date, **extra: Any) -> dict[str, Any]:
    time_range = json.dumps({"since": since.isoformat(), "until": until.isoformat()})
    return {"level": "ad", "time_range": time_range, "time_increment": 1, **extra}


async def test_insights_pages_follow_cursors_and_the_last_page_has_no_next(
    http: httpx.AsyncClient, sim: SimState
) -> None:
    today = local_today(sim, "1001")
    status_filter = json.dumps([{"field": "ad.effective_status", "operator": "IN", "value": ["ACTIVE"]}])
    params = insights_params(today - timedelta(days=3), today, limit=7, filtering=status_filter)
    pages, after = [], None
    while True:
        response = await http.get(
            "/v25.0/act_1001/insights", params={**params, **({"after": after} if after else {})}, headers=AUTH
        )
        body = response.json()
        pages.append(body)
        if "next" not in body["paging"]:
            break
        after = body["paging"]["cursors"]["after"]
        assert f"after={after}" in body["paging"]["next"]

    rows = [row for page in pages for row in page["data"]]
    assert len(pages) > 1 and all(len(p["data"]) == 7 for p in pages[:-1])
    for row in rows:
        assert all(isinstance(row[k], str) for k in ("impressions", "clicks", "spend", "date_start"))
        assert all(isinstance(a["value"], str) for a in row.get("actions", []))
    assert len({(r["ad_id"], r["date_start"]) for r in rows}) == len(rows)


async def test_days_without_delivery_have_no_rows(http: httpx.AsyncClient, sim: SimState) -> None:
    today = local_today(sim, "1001")
    since = today - timedelta(days=20)
    rows = truth(sim, "1001", "ad", since, today)
    assert 0 < len(rows) < 18 * 21
    response = await http.get(
        "/_sim/truth", params={"account": "1001", "level": "ad", "since": since, "until": today}
    )
    assert response.json()["rows"] == rows


async def test_removed_objects_are_hidden_unless_filtered_for(http: httpx.AsyncClient) -> None:
    default = (await http.get("/v25.0/act_1001/ads", params={"fields": "id,status"}, headers=AUTH)).json()
    assert {a["status"] for a in default["data"]}.isdisjoint({"DELETED", "ARCHIVED"})
    every = json.dumps([{"field": "effective_status", "operator": "IN", "value": ["DELETED", "ARCHIVED"]}])
    removed = await http.get(
        "/v25.0/act_1001/ads", params={"filtering": every, "fields": "id,status"}, headers=AUTH
    )
    assert {a["status"] for a in removed.json()["data"]} == {"DELETED", "ARCHIVED"}

    wrong_level = json.dumps([{"field": "effective_status", "operator": "IN", "value": ["ADSET_PAUSED"]}])
    rejected = await http.get("/v25.0/act_1001/campaigns", params={"filtering": wrong_level}, headers=AUTH)
    assert rejected.json()["error"]["code"] == 100


async def test_date_limits_and_usage_headers_on_errors(http: httpx.AsyncClient, sim: SimState) -> None:
    today = local_today(sim, "1001")
    old = today - timedelta(days=37 * 31)
    response = await http.get("/v25.0/act_1001/insights", params=insights_params(old, today), headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 3018
    assert "x-business-use-case-usage" in response.headers and "x-app-usage" in response.headers

    tomorrow = today + timedelta(days=1)
    future = await http.get("/v25.0/act_1001/insights", params=insights_params(today, tomorrow), headers=AUTH)
    assert "cannot be in the future" in future.json()["error"]["message"]

    missing = await http.get("/v25.0/act_1001")
    assert missing.json()["error"]["code"] == 104


async def test_throttle_fault_reports_full_usage_and_regain_time(http: httpx.AsyncClient) -> None:
    await http.post("/_sim/faults", json={"kind": "throttle", "code": 613, "regain_minutes": 9})
    response = await http.get("/v25.0/act_1001", headers=AUTH)
    assert response.json()["error"]["code"] == 613
    usage = json.loads(response.headers["x-business-use-case-usage"])["1001"][0]
    assert (usage["call_count"], usage["estimated_time_to_regain_access"]) == (100.0, 9)
    assert (await http.get("/v25.0/act_1001", headers=AUTH)).status_code == 200  # count 1 by default


async def test_control_endpoints_create_accounts_and_reset(http: httpx.AsyncClient) -> None:
    spec = {
        "account_id": "777",
        "campaigns": 2,
        "adsets_per_campaign": 1,
        "ads_per_adset": 2,
        "timezone": "UTC",
    }
    created = (await http.post("/_sim/accounts", json={**spec, "currency": "EUR", "seed": 7})).json()
    assert (created["campaigns"], created["ads"], created["currency"]) == (2, 4, "EUR")
    assert (await http.get("/v25.0/act_777", headers=AUTH)).status_code == 200

    await http.post("/_sim/faults", json={"kind": "timeout", "seconds": 0.01, "count": None})
    await http.post("/_sim/reset")
    assert (await http.get("/_sim/faults")).json() == {"faults": []}
    assert (await http.get("/v25.0/act_777", headers=AUTH)).json()["error"]["error_subcode"] == 33


async def test_async_report_run_lifecycle(http: httpx.AsyncClient, sim: SimState) -> None:
    await http.post("/_sim/config", json={"async_polls_to_complete": 2})
    today = local_today(sim, "1001")
    params = insights_params(today - timedelta(days=6), today - timedelta(days=1))
    run_id = (await http.post("/v25.0/act_1001/insights", params=params, headers=AUTH)).json()[
        "report_run_id"
    ]
    statuses = []
    for _ in range(3):
        statuses.append((await http.get(f"/v25.0/{run_id}", headers=AUTH)).json()["async_status"])
    assert statuses == ["Job Not Started", "Job Running", "Job Completed"]
    rows = (await http.get(f"/v25.0/{run_id}/insights", params={"limit": 500}, headers=AUTH)).json()["data"]
    assert len(rows) == len(truth(sim, "1001", "ad", today - timedelta(days=6), today - timedelta(days=1)))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_simulator_runs_as_a_real_server() -> None:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "metricx_meta.simulator", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/v25.0/act_1002", params={
                    "fields": "timezone_name,currency", "access_token": DEFAULT_TOKEN})  # fmt: skip
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "simulator did not start"
                time.sleep(0.1)
        assert response.json()["timezone_name"] == "Asia/Tokyo"
        accounts = httpx.get(f"http://127.0.0.1:{port}/_sim/accounts").json()["accounts"]
        assert {(a["timezone"], a["currency"]) for a in accounts} >= {
            ("America/Los_Angeles", "USD"), ("Asia/Tokyo", "JPY"), ("Asia/Kolkata", "INR")
        }  # fmt: skip
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize(("scope", "code"), [("account", 80000), ("app", 4), ("token", 17)])
async def test_shared_throttle_fault_in_metas_codes(http: httpx.AsyncClient, scope: str, code: int) -> None:
    fault = {"kind": "throttle", "scope": scope, "account": "act_1001", "retry_after_s": 120}
    await http.post("/_sim/faults", json=fault)
    assert (await http.get("/v25.0/act_2002", headers=AUTH)).status_code == 200  # another account
    response = await http.get("/v25.0/act_1001", headers=AUTH)
    assert response.json()["error"]["code"] == code
    usage = json.loads(response.headers["x-business-use-case-usage"])["1001"][0]
    assert usage["estimated_time_to_regain_access"] == 2
    logged = (await http.get("/_sim/requests")).json()["requests"]
    assert [(e["account"], e["status"]) for e in logged] == [("2002", 200), ("1001", 400)]


async def test_shared_token_version_and_body_faults_in_metas_shapes(http: httpx.AsyncClient) -> None:
    async def answer(fault: dict[str, Any], version: str = "v25.0") -> httpx.Response:
        await http.post("/_sim/faults", json=fault)
        return await http.get(f"/{version}/act_1001", headers=AUTH)

    expired = (await answer({"kind": "token_expired"})).json()["error"]
    assert (expired["code"], expired["error_subcode"]) == (190, 463)
    revoked = (await answer({"kind": "token_revoked"})).json()["error"]
    assert (revoked["code"], revoked["error_subcode"]) == (190, 458)
    assert (await answer({"kind": "version_sunset", "version": "v25.0"}, "v26.0")).status_code == 200
    assert (await http.get("/v25.0/act_1001", headers=AUTH)).json()["error"]["code"] == 2635
    cut = await answer({"kind": "malformed", "mode": "truncated"})
    assert cut.status_code == 200
    with pytest.raises(ValueError):
        cut.json()


async def test_late_conversions_follow_the_clock(http: httpx.AsyncClient, sim: SimState) -> None:
    end = local_today(sim, "1001") - timedelta(days=1)
    week = {"since": (end - timedelta(days=6)).isoformat(), "until": end.isoformat()}
    params = {"account": "1001", "level": "ad", **week}
    before = (await http.get("/_sim/truth", params=params)).json()["rows"]
    await http.post("/_sim/clock", json={"advance_s": 5 * 86400})
    after = (await http.get("/_sim/truth", params=params)).json()["rows"]
    assert sum(r["conversions"] for r in after) > sum(r["conversions"] for r in before)
    assert [r["spend"] for r in after] == [r["spend"] for r in before]  # only conversions come late


async def test_expired_cursor_and_unknown_version_are_refused(http: httpx.AsyncClient, sim_post: Any) -> None:
    params = {"access_token": "sim-valid-token", "fields": "id", "limit": "1"}
    first = (await http.get("/v26.0/act_1001/campaigns", params=params)).json()
    await sim_post("/_sim/faults", {"kind": "cursor_expired"})
    after = first["paging"]["cursors"]["after"]
    expired = await http.get("/v26.0/act_1001/campaigns", params={**params, "after": after})
    assert expired.status_code == 400 and expired.json()["error"]["code"] == 100
    assert (await http.get("/v26.0/act_1001/campaigns", params={**params, "after": after})).status_code == 200
    unknown = await http.get("/v99.0/act_1001", params=params)
    assert unknown.json()["error"]["code"] == 2500
    sunset = await http.get("/v24.0/act_1001", params=params)  # Marketing v24.0 ended 2026-11-10
    assert sunset.json()["error"]["code"] == 2635


async def test_app_quota_is_shared_by_every_account_of_the_app(
    http: httpx.AsyncClient, sim_post: Any
) -> None:
    """With the app's quota modelled, calls on any account count; at 100% every account gets code 4."""
    await sim_post("/_sim/config", {"app_usage_per_call_pct": 25})
    params = {"access_token": "sim-valid-token", "fields": "account_id"}
    answers = [await http.get(f"/v26.0/act_{n}", params=params) for n in ("1001", "2002", "3003", "1001")]
    assert [a.status_code for a in answers] == [200, 200, 200, 400]
    assert [json.loads(a.headers["x-app-usage"])["call_count"] for a in answers[:3]] == [25, 50, 75]
    for account in ("2002", "3003"):
        refused = (await http.get(f"/v26.0/act_{account}", params=params)).json()["error"]
        assert refused["code"] == 4 and "Application request limit" in refused["message"]
