"""Broken plugins (import error, misspelled hook, wrong core version, a registration hook that raises)
are reported in one line and skipped.

The fixture plugins live in tests/fixtures/broken_plugins with their own dist-info; only the
subprocesses given that directory on PYTHONPATH see them, so other test sessions are unaffected.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from core.enqueue import enqueue_sync_job
from tests.conftest import fetch_one

FIXTURES = Path(__file__).parents[1] / "fixtures" / "broken_plugins"
EXPECTED = {
    "broken_import": "plugin 'broken_import' failed to import 'metricx_broken_import': ModuleNotFoundError",
    "misspelled_hook": "plugin 'misspelled_hook' is invalid: unknown hook 'register_provider'",
    "wrong_core": "plugin 'wrong_core' needs metricx core >=9.0,<10, but 0.1.0 is installed",
    "raising_hook": (
        "plugin 'raising_hook' failed in register_providers: RuntimeError: settings file not found"
    ),
}
METRICX = str(Path(sys.executable).parent / "metricx")
CONN = "SELECT sync_status, last_sync_completed_at FROM connections WHERE id = :c"


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("METRICX_") or k.startswith("METRICX_TEST")
    }
    return {**env, "PYTHONPATH": str(FIXTURES), **extra}


def test_plugins_json_names_each_broken_plugin_and_keeps_the_good_ones() -> None:
    result = subprocess.run([METRICX, "plugins", "--json"], env=_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    for name, message in EXPECTED.items():
        assert rows[name]["problem"].startswith(message), rows[name]
        assert rows[name]["providers"] == []
    assert rows["testprovider"]["problem"] is None
    assert rows["testprovider"]["providers"] == ["testprovider"]
    # What the raising plugin registered before it raised is not kept.
    assert all("half_registered" not in row["providers"] for row in rows.values())


def test_plugins_table_prints_each_problem_on_one_line() -> None:
    result = subprocess.run([METRICX, "plugins"], env=_env(COLUMNS="100"), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("skipped: ")]
    assert len(lines) == len(EXPECTED)
    for message in EXPECTED.values():
        assert any(line.startswith(f"skipped: {message}") for line in lines), (message, lines)


def test_strict_mode_fails_with_every_problem() -> None:
    result = subprocess.run(
        [METRICX, "plugins"], env=_env(METRICX_STRICT_PLUGINS="1"), capture_output=True, text=True
    )
    assert result.returncode == 1
    error = " ".join(result.stderr.split())
    assert "error: METRICX_STRICT_PLUGINS is set and plugin 'broken_import'" in error
    for message in EXPECTED.values():
        assert message in error


def test_disable_plugins_skips_broken_plugins_even_in_strict_mode() -> None:
    disable = ",".join(EXPECTED)
    result = subprocess.run(
        [METRICX, "plugins", "--json"],
        env=_env(METRICX_STRICT_PLUGINS="1", METRICX_DISABLE_PLUGINS=disable),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert not {row["name"] for row in json.loads(result.stdout)} & EXPECTED.keys()


@pytest.mark.slow
async def test_worker_skips_broken_plugins_and_still_syncs(
    worker_process: Any, make_connection: Any, redis_client: Any
) -> None:
    worker = worker_process(PYTHONPATH=str(FIXTURES))
    for message in EXPECTED.values():
        assert message in worker.output()
    ws, conn = await make_connection()
    await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
    deadline = time.monotonic() + 60
    row = await fetch_one(CONN, c=conn)
    while row.last_sync_completed_at is None and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        row = await fetch_one(CONN, c=conn)
    assert row.sync_status == "idle", worker.output()[-3000:]
    snapshots = await fetch_one("SELECT count(*) AS n FROM metric_snapshots WHERE connection_id = :c", c=conn)
    assert snapshots.n == 12


@pytest.mark.slow
def test_strict_worker_refuses_to_start(metricx_env: Any) -> None:
    env = {**os.environ, **metricx_env.env, "PYTHONPATH": str(FIXTURES), "METRICX_STRICT_PLUGINS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "arq", "core.worker.WorkerSettings"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Listening on" not in output
    assert "Traceback" not in output
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert error.startswith("error: METRICX_STRICT_PLUGINS is set and plugin 'broken_import'")
    for message in EXPECTED.values():
        assert message in error
