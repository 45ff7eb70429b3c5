"""The simulator answers in the shapes of the recorded public fixtures, and models manager trees,
hidden and cancelled clients, and what GAQL refuses for the queries the client sends."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import child
from fixtures import all_names, load
from metricx_google.reports import CHILDREN_QUERY, metrics_query
from metricx_google.simulator import CHILD_BERLIN_ID, CHILD_NY_ID, MANAGER_ID
from metricx_google.simulator.gaql import QueryError, parse

from core import ConfigError

QUERY_FIXTURES = [
    n for n in all_names() if n.startswith("success_") and "query" in load(n).meta.get("_request", {})
]


def paths(node: Any, prefix: str = "") -> set[str]:
    """The key paths of a JSON row (lists by their first element)."""
    if isinstance(node, dict):
        out: set[str] = set()
        for key, value in node.items():
            out |= {f"{prefix}{key}"} | paths(value, f"{prefix}{key}.")
        return out
    return set()


async def _post(http, path: str, body: dict[str, Any], settings, creds, login: str | None = MANAGER_ID):
    form = {
        "grant_type": "refresh_token",
        "client_id": settings.client_id,
        "client_secret": settings.client_secret.get_secret_value(),
        "refresh_token": creds.refresh_token,
    }
    token = (await http.post("/token", data=form)).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"} | ({"login-customer-id": login} if login else {})
    return await http.post(path, json=body, headers=headers)


@pytest.mark.parametrize("name", QUERY_FIXTURES)
async def test_simulator_rows_have_the_recorded_shape(name, http, settings, creds, sim) -> None:
    fixture = load(name)
    query = fixture.meta["_request"]["query"]
    stream = isinstance(fixture.body, list)
    customer = MANAGER_ID if "customer_client" in query else CHILD_NY_ID
    if "segments.date" in query:  # the simulator's own dates (its clock is frozen in March 2026)
        query = query.split(" WHERE ")[0] + " WHERE segments.date BETWEEN '2026-03-01' AND '2026-03-09'"
    method = "searchStream" if stream else "search"
    login = None if customer == MANAGER_ID else MANAGER_ID
    answer = await _post(
        http, f"/v26/customers/{customer}/googleAds:{method}", {"query": query}, settings, creds, login
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    got_rows = [r for b in body for r in b.get("results", [])] if stream else body.get("results", [])
    want_rows = [r for b in fixture.body for r in b.get("results", [])] if stream else fixture.body["results"]
    assert got_rows and want_rows
    want = set().union(*(paths(r) for r in want_rows))
    got = set().union(*(paths(r) for r in got_rows))
    # Optional fields (a name Google omits when empty) may be missing from some rows, never unknown ones.
    assert got - want <= {"adGroupAd.ad.name", "campaign.name"}, sorted(got - want)
    assert want - got <= {"customerClient.descriptiveName", "adGroupAd.ad.name"}, sorted(want - got)
    top = set(fixture.body[0] if stream else fixture.body) - {"results"}
    assert top <= set(body[0] if stream else body) | {"queryResourceConsumption", "nextPageToken"}
    for row in got_rows:  # int64 as strings, as in the recorded rows
        for key in ("impressions", "clicks", "costMicros"):
            if key in row.get("metrics", {}):
                assert isinstance(row["metrics"][key], str)


async def test_developer_quota_answer_has_the_recorded_shape(http, settings, creds, sim) -> None:
    await http.post(
        "/_sim/faults", json={"kind": "throttle", "scope": "developer", "count": 1, "retry_after_s": 40591}
    )
    answer = await _post(
        http,
        f"/v26/customers/{CHILD_NY_ID}/googleAds:search",
        {"query": "SELECT customer.id FROM customer"},
        settings,
        creds,
    )
    recorded = load("error_quota_developer_exhausted.json").body
    assert answer.status_code == 429
    assert paths(answer.json()) == paths(recorded)
    got = answer.json()["error"]["details"][0]["errors"][0]["details"]["quotaErrorDetails"]
    want = recorded["error"]["details"][0]["errors"][0]["details"]["quotaErrorDetails"]
    assert (got["rateScope"], got["rateName"], got["retryDelay"]) == (
        want["rateScope"],
        want["rateName"],
        want["retryDelay"],
    )


async def test_token_answers_have_the_recorded_shape(http, settings, creds) -> None:
    form = {
        "grant_type": "refresh_token",
        "client_id": settings.client_id,
        "client_secret": settings.client_secret.get_secret_value(),
        "refresh_token": creds.refresh_token,
    }
    ok = (await http.post("/token", data=form)).json()
    assert set(ok) == set(load("token_refresh_success.json").body)
    await http.post("/_sim/revoke", json={"refresh_token": creds.refresh_token})
    refused = await http.post("/token", data=form)
    assert refused.json() == load("token_refresh_invalid_grant.json").body


@pytest.fixture
async def tree(http) -> dict[str, str]:
    """Manager -> sub-manager -> client; plus a hidden and a cancelled client under the manager."""
    ids = {"sub": "2000000100", "grandchild": "2000000101", "hidden": "2000000102", "cancelled": "2000000103"}
    for spec in (
        {"customer_id": ids["sub"], "manager": True, "manager_id": MANAGER_ID, "campaigns": 0},
        {"customer_id": ids["grandchild"], "manager_id": ids["sub"], "name": "Grandchild"},
        {"customer_id": ids["hidden"], "manager_id": MANAGER_ID, "hidden": True},
        {"customer_id": ids["cancelled"], "manager_id": MANAGER_ID, "status": "CANCELED"},
    ):
        assert (await http.post("/_sim/accounts", json=spec)).status_code == 201
    return ids


async def test_direct_children_only_with_hidden_and_cancelled_reported(provider, ctx, creds, tree) -> None:
    children = {
        c.customer_id: c
        for c in await provider.list_child_accounts(ctx, child(MANAGER_ID, login=None), creds)
    }
    assert set(children) == {CHILD_NY_ID, CHILD_BERLIN_ID, tree["sub"], tree["hidden"], tree["cancelled"]}
    assert tree["grandchild"] not in children  # level 2: not a direct child
    assert {c for c, v in children.items() if v.syncable} == {CHILD_NY_ID, CHILD_BERLIN_ID}
    with pytest.raises(ConfigError) as caught:
        await provider.fetch_account(ctx, child(MANAGER_ID, login=None), creds)
    message = caught.value.message
    syncable, _, skipped = message.partition("not syncable:")
    assert CHILD_NY_ID in syncable and tree["hidden"] not in syncable and tree["cancelled"] not in syncable
    assert f"{tree['hidden']}" in skipped and "hidden" in skipped and "canceled" in skipped


async def test_login_customer_id_may_be_any_ancestor(provider, ctx, creds, tree) -> None:
    top = await provider.fetch_account(ctx, child(tree["grandchild"], login=MANAGER_ID), creds)
    direct = await provider.fetch_account(ctx, child(tree["grandchild"], login=tree["sub"]), creds)
    assert top == direct and top.name == "Grandchild"
    with pytest.raises(ConfigError, match="login_customer_id"):
        await provider.fetch_account(ctx, child(tree["grandchild"], login=CHILD_NY_ID), creds)


async def test_simulator_returns_the_whole_tree_without_the_level_filter(http, settings, creds, tree) -> None:
    query = CHILDREN_QUERY.split(" WHERE ")[0]
    answer = await _post(
        http, f"/v26/customers/{MANAGER_ID}/googleAds:searchStream", {"query": query}, settings, creds, None
    )
    levels = {
        r["customerClient"]["id"]: r["customerClient"]["level"] for b in answer.json() for r in b["results"]
    }
    assert levels[MANAGER_ID] == "0" and levels[tree["sub"]] == "1" and levels[tree["grandchild"]] == "2"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        # segments.date selected without a finite date range
        ("SELECT campaign.id, segments.date, metrics.clicks FROM campaign", "EXPECTED_FILTERS_ON_DATE_RANGE"),
        # an ad_group_ad field from the campaign resource
        (
            "SELECT ad_group_ad.ad.id, metrics.clicks FROM campaign WHERE segments.date DURING LAST_7_DAYS",
            "UNRECOGNIZED_FIELD",
        ),
        ("SELECT campaign.id FROM campaigns", "INVALID_RESOURCE_NAME"),
    ],
)
def test_gaql_refuses_what_google_refuses(query: str, code: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse(query)
    assert caught.value.code == code


def test_the_clients_metric_queries_parse() -> None:
    from datetime import date

    for level in ("campaign", "ad_group", "ad"):
        parse(metrics_query(level, date(2026, 3, 1), date(2026, 3, 7)))
    parse(CHILDREN_QUERY)
