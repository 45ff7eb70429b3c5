"""API lifecycle: the default version is current and declared; sunset versions get Google's answers,
and the client turns both of them into one message naming the setting to change."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from conftest import child
from fixtures import load
from metricx_google import GoogleAdsProvider, GoogleSettings
from metricx_google.client import GoogleAdsAPI

from core import ConfigError

# core.lifecycle warns operators this many days before a sunset: the default must never be that close.
WARNING_DAYS = 60


def test_default_version_is_declared_and_more_than_60_days_from_its_sunset() -> None:
    api = GoogleAdsProvider(GoogleSettings()).api_version
    assert api.version == GoogleSettings().api_version == "v26"
    assert api.sunset is not None, "declare the default version's sunset (tentative if Google has none yet)"
    days_left = api.days_left(datetime.now(UTC).date())
    assert days_left is not None and days_left > WARNING_DAYS, (
        f"the default Google Ads API {api.version} sunsets on {api.sunset} ({days_left} days): "
        "move GoogleSettings.api_version to the current version"
    )


def test_a_retired_version_is_declared_retired() -> None:
    api = GoogleAdsProvider(GoogleSettings(api_version="v22")).api_version
    assert api.is_sunset(datetime(2026, 10, 7, tzinfo=UTC).date())


async def _sunset_error(provider, ctx, creds, sim, now: datetime) -> ConfigError:
    sim.clock.set(now)
    with pytest.raises(ConfigError) as caught:
        await provider.fetch_account(ctx, child(), creds)
    return caught.value


async def test_simulator_answers_a_sunset_version_like_google(settings, ctx, creds, sim, http) -> None:
    # Two weeks after v22's sunset: the GoogleAdsFailure envelope, shaped like the recorded one.
    sim.clock.set(datetime(2026, 10, 21, 12, tzinfo=UTC))
    token = (
        await http.post(
            "/token",
            data={
                "grant_type": "refresh_token",
                "client_id": settings.client_id,
                "client_secret": settings.client_secret.get_secret_value(),
                "refresh_token": creds.refresh_token,
            },
        )
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "login-customer-id": "1000000001"}
    body = {"query": "SELECT customer.id FROM customer"}
    sunset = await http.post("/v22/customers/1000000002/googleAds:search", json=body, headers=headers)
    recorded = load("error_unsupported_version.json")
    assert sunset.status_code == recorded.http_status
    got, want = sunset.json()["error"], recorded.body["error"]
    assert (got["code"], got["status"], got["message"]) == (want["code"], want["status"], want["message"])
    assert got["details"][0]["errors"][0]["errorCode"] == want["details"][0]["errors"][0]["errorCode"]
    assert got["details"][0]["errors"][0]["message"].startswith("Version v22 is deprecated.")
    # The current version still works at that moment.
    ok = await http.post("/v26/customers/1000000002/googleAds:search", json=body, headers=headers)
    assert ok.status_code == 200
    # Weeks later the version's paths are gone: a plain-text 404.
    sim.clock.set(datetime(2026, 12, 2, 12, tzinfo=UTC))
    gone = await http.post("/v22/customers/1000000002/googleAds:search", json=body, headers=headers)
    fixture = load("error_version_gone_404.txt")
    assert gone.status_code == fixture.http_status and gone.text == fixture.text
    assert gone.headers["content-type"].startswith(fixture.meta["_content_type"])


async def test_both_sunset_answers_map_to_one_message_naming_the_setting(settings, ctx, creds, sim) -> None:
    provider = GoogleAdsProvider(settings.model_copy(update={"api_version": "v22"}))
    early = await _sunset_error(provider, ctx, creds, sim, datetime(2026, 10, 21, 12, tzinfo=UTC))
    late = await _sunset_error(provider, ctx, creds, sim, datetime(2026, 12, 2, 12, tzinfo=UTC))
    for error in (early, late):
        assert "v22" in error.message and "METRICX_GOOGLE_API_VERSION" in error.message
        assert "reconnect" not in error.message.lower()
    assert early.message.split(" (")[0] == late.message.split(" (")[0]


@pytest.mark.parametrize(
    "name",
    ["error_unsupported_version.json", "error_version_deprecated_unknown.json", "error_version_gone_404.txt"],
)
def test_recorded_sunset_answers_name_the_setting(name: str) -> None:
    fixture = load(name)
    error = GoogleAdsAPI("1000000002", stream=False, version="v14").classify(fixture.response())
    assert isinstance(error, ConfigError)
    assert "METRICX_GOOGLE_API_VERSION" in error.message
