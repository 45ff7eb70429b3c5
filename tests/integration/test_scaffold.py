"""`metricx new-provider` writes a package that installs, is discovered, passes the suite and syncs.

The package is installed with pip into a directory of its own (``pip install --target``) that
only this test's subprocesses get on PYTHONPATH: a real installed distribution with its entry
point, invisible to the other test sessions sharing the venv, and nothing to uninstall.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.enqueue import enqueue_sync_job
from core.testing.conformance import simulator_process
from tests.conftest import fetch_one

NAME = "acme_kit"
METRICX = str(Path(sys.executable).parent / "metricx")
CONN = "SELECT sync_status, last_sync_completed_at, last_sync_error FROM connections WHERE id = :c"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """(package dir, env with PYTHONPATH naming the pip --target dir it is installed in)."""
    root = tmp_path_factory.mktemp("scaffold")
    made = subprocess.run(
        [METRICX, "new-provider", NAME, "--dir", str(root)], capture_output=True, text=True, check=False
    )
    assert made.returncode == 0, made.stderr
    package = root / "metricx-acme-kit"
    site = root / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(package)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("METRICX_") or k.startswith("METRICX_TEST")
    }
    return package, {**env, "PYTHONPATH": str(site)}


def test_scaffold_writes_a_complete_package(installed: tuple[Path, dict[str, str]]) -> None:
    package, _ = installed
    files = {str(p.relative_to(package)) for p in package.rglob("*") if p.is_file()}
    assert {
        "pyproject.toml",
        "README.md",
        "metricx_acme_kit/plugin.py",
        "metricx_acme_kit/client.py",
        "metricx_acme_kit/provider.py",
        "metricx_acme_kit/simulator.py",
        "metricx_acme_kit/demo.py",
        "tests/test_conformance.py",
    } <= files
    assert 'acme_kit = "metricx_acme_kit.plugin"' in (package / "pyproject.toml").read_text()
    again = subprocess.run([METRICX, "new-provider", NAME, "--dir", str(package.parent)], capture_output=True)
    assert again.returncode == 1 and b"already exists" in again.stderr


def test_installed_package_is_listed_by_metricx_plugins(installed: tuple[Path, dict[str, str]]) -> None:
    _, env = installed
    result = subprocess.run([METRICX, "plugins", "--json"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    row = next(r for r in json.loads(result.stdout) if r["name"] == NAME)
    assert row["version"] == "0.1.0" and row["distribution"] == "metricx-acme-kit"
    assert row["providers"] == [NAME] and row["problem"] is None
    assert row["hooks"] == ["metricx_core_version", "register_providers", "register_simulators"]


@pytest.mark.slow
def test_generated_tests_pass_the_conformance_suite(installed: tuple[Path, dict[str, str]]) -> None:
    package, env = installed
    # -P: import the package from where pip installed it, not from the source folder.
    result = subprocess.run(
        [sys.executable, "-P", "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=package,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "17 passed" in result.stdout


@pytest.mark.slow
async def test_worker_syncs_the_scaffolded_provider(
    installed: tuple[Path, dict[str, str]], worker_process: Any, redis_client: Any, tmp_path: Path
) -> None:
    from core.db.engine import session_scope
    from core.providers import Credentials
    from core.services import create_connection, create_workspace

    _, env = installed
    with simulator_process(
        "metricx_acme_kit.simulator:app", log_path=tmp_path / "sim.log", env={"PYTHONPATH": env["PYTHONPATH"]}
    ) as sim:
        async with session_scope() as session:
            ws = await create_workspace(session, "scaffold")
            conn = await create_connection(
                session,
                ws.id,
                NAME,
                "5005",
                Credentials(access_token="acme_kit-valid-token"),
            )
        worker = worker_process(PYTHONPATH=env["PYTHONPATH"], METRICX_ACME_KIT_BASE_URL=sim.url)
        await enqueue_sync_job(str(conn.id), str(ws.id), redis=redis_client)
        deadline = time.monotonic() + 60
        row = await fetch_one(CONN, c=conn.id)
        while (
            row.last_sync_completed_at is None and row.last_sync_error is None and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.2)
            row = await fetch_one(CONN, c=conn.id)
    assert row.sync_status == "idle", (row, worker.output()[-3000:])
    counts = await fetch_one(
        "SELECT (SELECT count(*) FROM entities WHERE connection_id = :c) AS entities, "
        "(SELECT count(*) FROM metric_snapshots WHERE connection_id = :c) AS snapshots, "
        "(SELECT timezone FROM connections WHERE id = :c) AS timezone",
        c=conn.id,
    )
    # 2 campaigns + 6 ads; 6 ads x (yesterday + today) in the account's timezone
    assert (counts.entities, counts.snapshots, counts.timezone) == (8, 12, "America/New_York")


def test_scaffolded_simulator_runs_as_the_demo_runs_it(installed: tuple[Path, dict[str, str]]) -> None:
    """``python -m <package>.simulator`` (SimulatorSpec.module) serves the shared control protocol."""
    import httpx

    from core.embedded import free_port

    _, env = installed
    port = free_port()
    module = "metricx_acme_kit.simulator"
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", module, "--port", str(port)], env=env, stderr=subprocess.PIPE
    )
    url, auth = f"http://127.0.0.1:{port}", {"Authorization": "Bearer acme_kit-valid-token"}
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{url}/_sim/clock", timeout=0.5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, "simulator did not start"
                time.sleep(0.1)
        throttle = {"kind": "throttle", "account": "1002", "retry_after_s": 45}
        httpx.post(f"{url}/_sim/faults", json=throttle).raise_for_status()
        assert httpx.get(f"{url}/v1/accounts/1001", headers=auth).status_code == 200
        throttled = httpx.get(f"{url}/v1/accounts/1002", headers=auth)
        assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "45")

        today = datetime.fromisoformat(httpx.get(f"{url}/_sim/clock").json()["now"]).date()
        window = {"account": "1001", "since": str(today - timedelta(days=1)), "until": str(today)}
        before = httpx.get(f"{url}/_sim/truth", params=window).json()["rows"]
        httpx.post(f"{url}/_sim/clock", json={"advance_s": 2 * 86400}).raise_for_status()
        after = httpx.get(f"{url}/_sim/truth", params=window).json()["rows"]
        assert sum(int(r["conversions"]) for r in after) > sum(int(r["conversions"]) for r in before)
        logged = httpx.get(f"{url}/_sim/requests").json()["requests"]
        assert [(e["account"], e["status"]) for e in logged] == [("1001", 200), ("1002", 429)]
    finally:
        proc.terminate()
        proc.wait(10)
