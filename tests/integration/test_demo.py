"""`metricx demo` as a user runs it: real processes, every installed simulator, the story and the summary."""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlparse, urlunparse

import httpx
import pytest

from core.testing.servers import create_database, drop_database

pytestmark = pytest.mark.slow


def other_redis_db(url: str) -> str:
    """Another database of the session's Redis, derived from the session's own: sessions sharing one
    Redis (each on its own database) must not share the demo's queue, nor flush each other's data."""
    own = int(urlparse(url).path.lstrip("/") or 0)
    return urlunparse(urlparse(url)._replace(path=f"/{(own + 8) % 16}"))


class RunningDemo:
    """``metricx demo`` as a child process whose output is read while it runs."""

    def __init__(self, args: list[str], env: dict[str, str], stderr: Path) -> None:
        self.lines: list[str] = []
        self.stderr_path = stderr
        with stderr.open("w") as err:  # a file, not a pipe: a full pipe would block the demo
            self.proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None, "".join(self.lines)[-3000:] + self.stderr()
            assert time.monotonic() < deadline, "".join(self.lines)[-3000:]
            time.sleep(0.2)

    def stderr(self) -> str:
        return self.stderr_path.read_text()[-3000:]

    def finish(self, timeout_s: float) -> str:
        self.proc.wait(timeout=timeout_s)
        self.reader.join(timeout=5)
        out = "".join(self.lines)
        assert self.proc.returncode == 0, out[-3000:] + self.stderr()
        return out


def check_summary_against_the_api(out: str, data_dir: Path) -> None:
    """The totals the demo printed (and saved) are what the running API returns for the same days."""
    saved = json.loads((data_dir / "summary.json").read_text())
    key = (data_dir / "api.key").read_text().strip()
    assert (data_dir / "api.key").stat().st_mode & 0o077 == 0  # the key file is private
    api_url = re.search(r"API: (http://127\.0\.0\.1:\d+)/v1", out)
    workspace = re.search(r"API key for workspace ([0-9a-f-]{36})", out)
    assert api_url and workspace, out[-3000:]
    response = httpx.get(
        f"{api_url.group(1)}/v1/workspaces/{workspace.group(1)}/metrics/summary",
        params={"since": saved["since"], "until": saved["until"]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    api = {c["currency"]: c for c in body["currencies"]}
    assert set(api) == set(saved["currencies"]) and api
    for currency, numbers in saved["currencies"].items():
        assert Decimal(numbers["spend"]) == Decimal(str(api[currency]["ads"]["spend"])), currency
        assert Decimal(numbers["revenue"]) == Decimal(str(api[currency]["ads"]["revenue"])), currency
        assert numbers["impressions"] == api[currency]["ads"]["impressions"], currency
        assert Decimal(numbers["store_revenue"]) == Decimal(str(api[currency]["store_revenue"])), currency
        # ...and the printed table shows the same spend
        assert f"{Decimal(numbers['spend']):,.2f}" in out, currency
    assert "the API's /metrics/summary returns these same totals" in out
    assert any(Decimal(c["store_revenue"]) > 0 for c in body["currencies"])  # Shopify beside ad spend


def allow_at(authorization_url: str) -> httpx.Response:
    """What a user's Allow on the simulator's consent page does (its form, posted as a browser would)."""
    page = httpx.get(authorization_url, timeout=10)
    assert page.status_code == 200, page.text
    form = re.findall(r'<input type="(?:hidden|checkbox)" name="([^"]+)" value="([^"]*)"', page.text)
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    assert form and action, page.text
    fields = [(k, html.unescape(v)) for k, v in form] + [("decision", "allow")]
    return httpx.post(
        urljoin(authorization_url, html.unescape(action.group(1))),
        content=urlencode(fields),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=True,
        timeout=30,
    )


def connect_as_printed(out: str, data_dir: Path, tmp_path: Path) -> None:
    """The summary's "Connect an account" line, pasted into a shell while the demo runs, connects the
    simulator's one Meta account not connected yet once the user allows access."""
    [line] = [line for line in out.splitlines() if line.startswith("Connect an account")]
    command = line.split(": ", 1)[1]
    assert (data_dir / "cli.env").stat().st_mode & 0o077 == 0  # it holds the encryption key
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRICX_")}
    env.pop("DATABASE_URL", None), env.pop("REDIS_URL", None)  # all from the demo's cli.env
    with (tmp_path / "connect.out").open("w+") as stdout:
        proc = subprocess.Popen(
            ["bash", "-c", command], env=env, stdout=stdout, stderr=subprocess.PIPE, text=True, cwd=tmp_path
        )
        try:
            deadline = time.monotonic() + 60
            while "http" not in (url := Path(stdout.name).read_text()):
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr and proc.stderr.read()
                time.sleep(0.1)
            back = allow_at(url.strip().splitlines()[0])
            assert back.status_code == 200 and "go back to the terminal" in back.text
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err
    assert "connected meta account 1005" in Path(stdout.name).read_text()


# Two demo runs: the first syncs 90 days of eight connections (about a minute on a 2-core VM; the
# demo's Shopify simulator has a Plus store's cost bucket), the second reuses them.
@pytest.mark.timeout(480)
def test_demo_reaches_its_summary(metricx_env: Any, tmp_path: Path) -> None:
    database = asyncio.run(create_database(metricx_env.server_url))
    redis_url = other_redis_db(metricx_env.redis_url)
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRICX_")}
    # No scheduled realtime tick while the test compares the printed totals with the API's.
    env.update(DATABASE_URL=database, REDIS_URL=redis_url, COLUMNS="200", METRICX_CRON_REALTIME="0 0 1 1 *")
    metricx = str(Path(sys.executable).parent / "metricx")
    data_dir = tmp_path / "demo"
    try:
        demo = RunningDemo(
            [metricx, "demo", "--data-dir", str(data_dir), "--exit-after", "30"], env, tmp_path / "stderr"
        )
        try:
            demo.wait_for("Ready in", timeout_s=300)
            check_summary_against_the_api("".join(demo.lines), data_dir)
            connect_as_printed("".join(demo.lines), data_dir, tmp_path)
            out = demo.finish(timeout_s=60)
        finally:
            if demo.proc.poll() is None:
                demo.proc.terminate()
                demo.proc.wait(timeout=30)
        # A second run reuses what the first made and says so.
        env["COLUMNS"] = "60"  # a narrow terminal: commands must still be copy-pasteable
        again = subprocess.run(
            [metricx, "demo", "--data-dir", str(data_dir), "--exit-after", "1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=170,
        )
    finally:
        asyncio.run(drop_database(metricx_env.server_url, urlparse(database).path.lstrip("/")))
        redis.Redis.from_url(redis_url).flushdb()
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    key = (data_dir / "api.key").read_text().strip()
    assert "not created again" in again.stdout and "its API key" in again.stdout
    assert (
        "connections already backfilled" in again.stdout
        or "every connection is already backfilled" in again.stdout
    )
    assert f"  {key}\n" in again.stdout  # the same key, on one line
    curl = [line for line in again.stdout.splitlines() if "curl -H" in line]
    assert curl and all(f"Bearer {key}' \\" in line for line in curl)
    assert "export DATABASE_URL=" in again.stdout and "metricx connections list" in again.stdout
    assert re.search(r"Dashboard: http://127\.0\.0\.1:\d+/ ", again.stdout) and "/login" in again.stdout
    assert "{'" not in out + again.stdout  # no raw Python dicts
    for step in ("1. Backfill", "2. Realtime", "3. Attribution", "4. Rate limit", "Summary"):
        assert step in out
    assert "fan-out: enqueued" in out
    assert "rate_limited" in out and "deferred, resumes in" in out  # the throttled account
    assert "needs reconnecting" in out  # the expired login
    assert "API key for workspace" in out and "mx_" in out
    # the attribution re-sync changed at least one past day's numbers
    changes = [line for line in out.splitlines() if "last 7 days:" in line]
    assert any(
        line.split("conversions ")[1].split(",")[0].split(" -> ")[0]
        != line.split("conversions ")[1].split(",")[0].split(" -> ")[1]
        for line in changes
    )
    assert not (tmp_path / "demo" / "pg").exists()  # real URLs given: no embedded servers started
