"""Connecting accounts in real headless Chromium: ``POST .../connect/{provider}``, the simulator's
login and consent pages, the API's callback page listing the accounts, picking two, and their synced
numbers in the API. Real ``metricx api`` and worker processes; each provider's simulator over HTTP.

Screenshots go to ``$METRICX_ARTIFACTS_DIR`` (default ``.metricx/artifacts/browser``) as
``connect-<provider>-NN-<step>.png``. Requests to anything but loopback fail the test.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from core.testing.http import serve_app
from core.testing.servers import free_port
from tests.browser.test_dashboard import Offline, chromium, shot, sign_in, wait_job
from tests.integration.test_api_process import METRICX, tenant_over_http

__all__ = ["chromium"]  # fixture

pytestmark = [pytest.mark.slow, pytest.mark.browser]
#: The authorization codes and states the browser carried back: none may reach the API's log.
CARRIED: list[str] = []


@dataclass
class Platform:
    """A provider's simulator, its settings, what to start the flow with and which accounts to pick."""

    provider: str
    serve: Callable[[ExitStack], dict[str, str]]
    #: One (start body, accounts to pick) per flow: a Shopify token reaches one store, so two flows.
    flows: list[tuple[dict[str, Any], list[str]]]


def _meta(stack: ExitStack) -> dict[str, str]:
    from metricx_meta.simulator import SIM_APP_ID, SIM_APP_SECRET, SimState, create_app

    url = stack.enter_context(serve_app(create_app(SimState(now=datetime.now(UTC)))))
    return {
        "METRICX_META_BASE_URL": url,
        "METRICX_META_OAUTH_DIALOG_URL": url,
        "METRICX_META_APP_ID": SIM_APP_ID,
        "METRICX_META_APP_SECRET": SIM_APP_SECRET,
        "METRICX_META_ASYNC_POLL_INTERVAL_S": "0.1",
    }


def _google(stack: ExitStack) -> dict[str, str]:
    from metricx_google.simulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SimState, create_app

    url = stack.enter_context(serve_app(create_app(SimState(now=datetime.now(UTC)))))
    return {
        "METRICX_GOOGLE_BASE_URL": url,
        "METRICX_GOOGLE_TOKEN_URL": f"{url}/token",
        "METRICX_GOOGLE_AUTH_URL": f"{url}/o/oauth2/v2/auth",
        "METRICX_GOOGLE_CLIENT_ID": DEFAULT_CLIENT_ID,
        "METRICX_GOOGLE_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
    }


def _shopify(stack: ExitStack) -> dict[str, str]:
    from metricx_shopify.simulator import SimState, create_app

    url = stack.enter_context(serve_app(create_app(SimState())))
    return {
        "METRICX_SHOPIFY_BASE_URL": url,
        "METRICX_SHOPIFY_CLIENT_ID": "sim-client-id",
        "METRICX_SHOPIFY_CLIENT_SECRET": "sim-client-secret",
    }


PLATFORMS = {
    "meta": Platform("meta", _meta, [({}, ["1001", "1002"])]),
    # The manager is listed but not connectable; its two clients are connected through it.
    "google": Platform("google", _google, [({}, ["1000000002", "1000000003"])]),
    "shopify": Platform(
        "shopify",
        _shopify,
        [
            ({"shop": "sim-store-1.myshopify.com"}, ["sim-store-1.myshopify.com"]),
            ({"shop": "sim-store-2.myshopify.com"}, ["sim-store-2.myshopify.com"]),
        ],
    ),
}


@pytest.fixture(scope="module")
def stack(metricx_env: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """Every platform's simulator, and ``metricx api`` pointed at them; yields (API URL, their env)."""
    with ExitStack() as exits:
        env: dict[str, str] = {}
        for platform in PLATFORMS.values():
            env |= platform.serve(exits)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env["METRICX_PUBLIC_URL"] = url
        log_path = tmp_path_factory.mktemp("api") / "api.log"
        full = {**os.environ, **metricx_env.env, **env, "METRICX_LOG_FORMAT": "json"}
        full.pop("METRICX_LOAD_PLUGINS", None)
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [METRICX, "api", "--host", "127.0.0.1", "--port", str(port)], env=full, stdout=log, stderr=log
            )
            try:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    try:
                        if httpx.get(f"{url}/v1/health").status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.1)
                    assert proc.poll() is None, log_path.read_text()
                yield url, env
            finally:
                proc.terminate()
                proc.wait(20)
        text = log_path.read_text()
        assert "/callback" in text  # the callbacks were logged, and without what they carried
        secrets = (
            "sim-app-secret",
            "sim-client-secret",
            "sim-user-",
            "shpat_exp_",
            "shprt_",
            "1//sim-",
            "ya29.",
        )
        for secret in (*secrets, *CARRIED):
            assert secret not in text, f"the API log shows {secret!r}"


@pytest.mark.parametrize("name", sorted(PLATFORMS))
def test_connect_in_chromium(name: str, stack: Any, worker_process: Any, chromium: Any) -> None:
    platform = PLATFORMS[name]
    api, env = stack
    worker_process(**env)
    ws, headers = tenant_over_http(api)
    base = f"{api}/v1/workspaces/{ws}"
    offline = Offline(chromium)
    page = offline.context.new_page()
    sign_in(page, api, headers["Authorization"].removeprefix("Bearer "))
    for n, (body, pick) in enumerate(platform.flows, start=1):
        page.goto(f"{api}/dashboard")
        if body.get("shop"):
            page.fill("#connect-shop", body["shop"])
        page.click(f"#connect-{name}")
        page.click("#continue")
        shot(page, f"connect-{name}-{n}1-consent")
        page.click("#allow")
        page.wait_for_url(f"{api}/v1/connect/{name}/callback*")
        callback_url = page.url
        carried = parse_qs(urlsplit(page.url).query)
        CARRIED.extend(carried["code"] + carried["state"])
        assert page.locator("#title").inner_text() == "Accounts found"
        shot(page, f"connect-{name}-{n}2-accounts-found")
        session_id = page.locator("#session-id").inner_text()
        listed = httpx.get(f"{base}/connect/{name}/accounts", params={"session": session_id}, headers=headers)
        assert listed.status_code == 200 and all(a["timezone"] for a in listed.json()["accounts"])

        page.click("#pick-in-dashboard")
        page.wait_for_url(f"{api}/dashboard/connect/{name}/accounts*")
        for account in pick:
            page.check(f'tr.account[data-id="{account}"] input[name=account]')
        page.uncheck("#backfill")
        shot(page, f"connect-{name}-{n}3-pick")
        page.click("#connect-picked")
        page.wait_for_url(f"{api}/dashboard")
    shot(page, f"connect-{name}-04-dashboard")
    connections = httpx.get(f"{base}/connections", headers=headers).json()["items"]
    assert sorted(c["external_account_id"] for c in connections) == sorted(
        p for _, ps in platform.flows for p in ps
    )
    for connection in connections:
        assert page.locator(f'tr[data-connection-id="{connection["id"]}"]').count() == 1
    assert len(connections) == 2

    for connection in connections:
        sync = httpx.post(
            f"{base}/connections/{connection['id']}/sync", json={"mode": "realtime"}, headers=headers
        )
        assert sync.status_code == 202, sync.text
        assert wait_job(base, headers, sync.json()["job_id"])["status"] == "complete"
        got = httpx.get(f"{base}/connections/{connection['id']}", headers=headers).json()
        assert got["sync_status"] == "idle" and got["total_syncs_succeeded"] == 1, got
        metrics = httpx.get(f"{base}/connections/{connection['id']}/metrics", headers=headers)
        assert metrics.status_code == 200 and metrics.json()["items"], metrics.text

    # The replayed callback is refused with a page that says so.
    page.goto(callback_url)
    assert page.locator("#error").get_attribute("data-code") == "state_used"
    shot(page, f"connect-{name}-99-replayed")
    offline.context.close()
    assert offline.blocked == []


def test_reconnect_from_the_dashboard(stack: Any, worker_process: Any, chromium: Any) -> None:
    """A Meta connection whose token the platform revoked is fixed from the dashboard: Reconnect, the
    simulator's consent page, back to the callback; it keeps its id and history and syncs again."""
    api, env = stack
    worker_process(**env)
    sim = env["METRICX_META_BASE_URL"]
    ws, headers = tenant_over_http(api)
    base = f"{api}/v1/workspaces/{ws}"
    token = "reconnect-test-token"
    httpx.post(f"{sim}/_sim/tokens", json={"token": token, "state": "valid"}).raise_for_status()
    created = httpx.post(
        f"{base}/connections",
        json={
            "provider": "meta",
            "external_account_id": "1003",
            "credentials": {"access_token": token},
            "backfill": False,
        },
        headers=headers,
    )
    assert created.status_code == 201, created.text
    conn = created.json()["id"]
    url = f"{base}/connections/{conn}"

    def sync() -> dict[str, Any]:
        queued = httpx.post(f"{url}/sync", json={"mode": "realtime"}, headers=headers)
        assert queued.status_code == 202, queued.text
        return wait_job(base, headers, queued.json()["job_id"])

    assert sync()["status"] == "complete"
    rows_before = len(httpx.get(f"{url}/metrics", headers=headers).json()["items"])
    assert rows_before
    httpx.post(f"{sim}/_sim/tokens", json={"token": token, "state": "invalid"}).raise_for_status()
    sync()
    assert httpx.get(url, headers=headers).json()["sync_status"] == "reconnect_required"

    offline = Offline(chromium)
    page = offline.context.new_page()
    sign_in(page, api, headers["Authorization"].removeprefix("Bearer "))
    row = page.locator(f'tr[data-connection-id="{conn}"]')
    assert row.get_attribute("data-sync-status") == "reconnect_required"
    shot(page, "reconnect-meta-01-dashboard")
    row.locator("td.action a").click()
    page.wait_for_url(f"{api}/dashboard/connections/{conn}")
    page.click("#action-reconnect")
    assert page.locator("#reconnect-id").inner_text() == conn
    shot(page, "reconnect-meta-02-start")
    page.click("#continue")
    shot(page, "reconnect-meta-03-consent")
    page.click("#allow")
    page.wait_for_url(f"{api}/v1/connect/meta/callback*")
    carried = parse_qs(urlsplit(page.url).query)
    CARRIED.extend(carried["code"] + carried["state"])
    assert page.locator("#title").inner_text() == "Reconnected"
    assert conn in page.locator("body").inner_text()
    shot(page, "reconnect-meta-04-reconnected")

    # The same connection (no new one), back to idle once any catch-up the reconnect queued is done.
    deadline = time.monotonic() + 60
    while (got := httpx.get(url, headers=headers).json())["sync_status"] != "idle":
        assert time.monotonic() < deadline, got
        time.sleep(0.3)
    listed = httpx.get(f"{base}/connections", headers=headers).json()["items"]
    assert [c["id"] for c in listed] == [conn]
    page.click("#back-to-dashboard")
    page.wait_for_url(f"{api}/dashboard")
    assert page.locator(f'tr[data-connection-id="{conn}"]').get_attribute("data-sync-status") == "idle"
    shot(page, "reconnect-meta-05-dashboard")

    # It syncs with the new tokens, and the days it had are still there.
    assert sync()["status"] == "complete"
    assert len(httpx.get(f"{url}/metrics", headers=headers).json()["items"]) >= rows_before
    offline.context.close()
    assert offline.blocked == []
