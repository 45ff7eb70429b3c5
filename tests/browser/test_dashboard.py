"""The dashboard in real headless Chromium (Debian's package, driven by Playwright) against the real
``metricx api`` process, a real worker and the test provider's simulator.

Screenshots of each page go to ``$METRICX_ARTIFACTS_DIR`` (default ``.metricx/artifacts/browser``).
Every request the pages make is checked: anything not for 127.0.0.1 is blocked and fails the test.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.integration.test_api_process import api_server, tenant_over_http

__all__ = ["api_server"]  # fixture

CHROMIUM = Path(os.environ.get("METRICX_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(
    os.environ.get("METRICX_ARTIFACTS_DIR", Path(__file__).parents[2] / ".metricx/artifacts/browser")
)
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}

PROGRESS_JS = """() => {
  const bar = document.querySelector('#backfill-progress');
  const state = document.querySelector('#state');
  return {done: bar ? Number(bar.dataset.done) : null,
          complete: state ? state.innerText.includes('complete') : false};
}"""

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Headless Debian chromium through Playwright; skips (with the reason) where it is not installed."""
    if not CHROMIUM.exists():
        pytest.skip(f"no chromium at {CHROMIUM}: run ./scripts/install.sh --test (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()


class Offline:
    """A browser context whose requests may only go to loopback; others are aborted and recorded."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.blocked: list[str] = []
        self.context.route("**/*", self._route)

    def _route(self, route: Any) -> None:
        host = urlsplit(route.request.url).hostname or ""
        if route.request.url.startswith(("data:", "blob:")) or host in LOOPBACK:
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()


def shot(page: Any, name: str, *, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


def wait_job(base: str, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = httpx.get(f"{base}/jobs/{job_id}", headers=headers).json()
        if job["status"] in {"complete", "failed"}:
            return dict(job)
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


def connect(base: str, headers: dict[str, str], sim: Any, account: str, *, backfill: bool) -> str:
    body = {
        "provider": "testprovider",
        "external_account_id": account,
        "name": account.replace("-", " ").title(),
        "credentials": {"access_token": "tp-valid-token"},
        "config": {"base_url": sim.url},
        "backfill": backfill,
    }
    created = httpx.post(f"{base}/connections", json=body, headers=headers, timeout=30)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def sync_now(base: str, headers: dict[str, str], connection_id: str) -> dict[str, Any]:
    sync = httpx.post(f"{base}/connections/{connection_id}/sync", json={"mode": "realtime"}, headers=headers)
    assert sync.status_code == 202, sync.text
    return wait_job(base, headers, sync.json()["job_id"])


def sign_in(page: Any, url: str, key: str) -> None:
    page.goto(f"{url}/")
    page.wait_for_url(f"{url}/login")
    page.fill("#api_key", key)
    page.click("#sign-in")
    page.wait_for_url(f"{url}/dashboard")


def test_dashboard_in_chromium(api_server: str, sim: Any, worker_process: Any, chromium: Any) -> None:
    worker_process()
    ws, headers = tenant_over_http(api_server)
    base = f"{api_server}/v1/workspaces/{ws}"
    fine = connect(base, headers, sim, "fine-account", backfill=False)
    assert sync_now(base, headers, fine)["status"] == "complete"
    broken = connect(base, headers, sim, "revoked-account", backfill=False)
    sim.control(revoked=True)  # the platform refuses the tokens on the next call
    sync_now(base, headers, broken)
    sim.control(revoked=False)
    assert httpx.get(f"{base}/connections/{broken}", headers=headers).json()["sync_status"] == (
        "reconnect_required"
    )

    offline = Offline(chromium)
    page = offline.context.new_page()
    page.goto(f"{api_server}/")
    page.wait_for_url(f"{api_server}/login")
    shot(page, "01-login")
    page.fill("#api_key", headers["Authorization"].removeprefix("Bearer "))
    page.click("#sign-in")
    page.wait_for_url(f"{api_server}/dashboard")
    assert headers["Authorization"].removeprefix("Bearer ") not in page.url

    fine_row = page.locator(f'tr[data-connection-id="{fine}"]')
    broken_row = page.locator(f'tr[data-connection-id="{broken}"]')
    assert fine_row.get_attribute("data-sync-status") == "idle"
    assert "synced just now" in fine_row.inner_text()
    assert broken_row.get_attribute("data-sync-status") == "reconnect_required"
    assert "needs attention" in broken_row.inner_text() and "reconnect" in broken_row.inner_text()
    assert "attention" in (broken_row.get_attribute("class") or "")
    shot(page, "02-connections")
    page.click("#filter-attention")
    page.wait_for_url("**/dashboard?attention=true")
    assert page.locator(f'tr[data-connection-id="{broken}"]').count() == 1
    assert page.locator(f'tr[data-connection-id="{fine}"]').count() == 0
    shot(page, "03-needs-attention")

    # A backfill slowed down by the simulator: its progress bar moves on the open page, without a reload.
    sim.control(slow_s=0.8)
    slow = connect(base, headers, sim, "backfill-account", backfill=True)
    page.goto(f"{api_server}/dashboard/connections/{slow}")
    page.evaluate("window.__noReload = true")
    seen: list[int] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        # One read of the live DOM (the partial may be swapped between two locator calls).
        state = page.evaluate(PROGRESS_JS)
        if state["done"] is not None and (not seen or seen[-1] != state["done"]):
            seen.append(state["done"])
            shot(page, f"04-backfill-progress-{state['done']}")
        if state["done"] is None and seen and state["complete"]:
            break
        page.wait_for_timeout(250)
    assert page.evaluate("window.__noReload") is True  # the page updated in place
    assert len(seen) >= 2 and seen == sorted(seen), seen
    sim.control(slow_s=0)

    # The charts show the API's own numbers for every day.
    page.reload()
    metrics = httpx.get(f"{base}/connections/{slow}/metrics", params=_last_30_days(page), headers=headers)
    expected = {r["metrics_date"]: r for r in metrics.json()["items"]}
    assert len(expected) >= 29  # the backfill ends yesterday; today is the realtime sync's
    for metric in ("spend", "conversions", "revenue"):
        bars = page.locator(f"#chart-{metric} rect.bar")
        assert bars.count() == 30
        for i in range(30):
            day = bars.nth(i).get_attribute("data-day") or ""
            want = Decimal(str(expected[day][metric])) if day in expected else Decimal(0)
            assert Decimal(bars.nth(i).get_attribute("data-value") or "x") == want, (metric, day)
    shot(page, "05-connection")

    _another_workspace_sees_nothing(chromium, api_server, fine)
    _offline_docs(page, api_server)

    page.goto(f"{api_server}/dashboard")
    page.click("#sign-out")
    page.wait_for_url(f"{api_server}/login")
    shot(page, "08-signed-out")
    page.goto(f"{api_server}/dashboard")
    page.wait_for_url(f"{api_server}/login")
    offline.context.close()
    assert offline.blocked == []


def _last_30_days(page: Any) -> dict[str, str]:
    days = page.locator("#chart-spend rect.bar")
    return {"start": days.first.get_attribute("data-day"), "end": days.last.get_attribute("data-day")}


def _another_workspace_sees_nothing(chromium: Any, url: str, connection_id: str) -> None:
    _, other = tenant_over_http(url)
    offline = Offline(chromium)
    page = offline.context.new_page()
    sign_in(page, url, other["Authorization"].removeprefix("Bearer "))
    assert connection_id not in page.content()
    response = page.goto(f"{url}/dashboard/connections/{connection_id}")
    assert response is not None and response.status == 404
    shot(page, "06-other-workspace-404")
    offline.context.close()
    assert offline.blocked == []


def _offline_docs(page: Any, url: str) -> None:
    page.goto(f"{url}/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=20000)
    shot(page, "07-swagger", full_page=False)
    page.goto(f"{url}/redoc")
    page.wait_for_selector("text=metricx", timeout=20000)
    page.wait_for_selector("[data-section-id]", timeout=20000)
    shot(page, "07-redoc", full_page=False)
