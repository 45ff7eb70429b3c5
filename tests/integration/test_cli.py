"""The ``metricx`` command as users run it: real subprocesses, a fresh database, a real worker process."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from core.testing.servers import create_database, drop_database, with_database

METRICX = shutil.which("metricx", path=str(Path(sys.executable).parent)) or "metricx"


def cli(
    env: dict[str, str], *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [METRICX, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"metricx {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@pytest.fixture
def empty_db(metricx_env: Any) -> Any:
    """A brand-new database with no tables, and the environment pointing at it."""
    name = f"metricx_cli_{uuid.uuid4().hex[:8]}"
    asyncio.run(create_database(metricx_env.server_url, name))
    env = {**os.environ, **metricx_env.env, "DATABASE_URL": with_database(metricx_env.server_url, name)}
    env["COLUMNS"] = "200"
    yield env
    asyncio.run(drop_database(metricx_env.server_url, name))


def test_empty_database_to_finished_backfill_with_progress(
    empty_db: dict[str, str], sim: Any, worker_process: Any
) -> None:
    env = empty_db
    assert "database is up to date" in cli(env, "db", "upgrade").stdout
    workspace = json.loads(cli(env, "workspaces", "create", "Acme", "--json").stdout)
    key = json.loads(cli(env, "keys", "create", workspace["id"], "--json").stdout)
    assert key["key"].startswith("mx_")

    sim.control(timezone="Europe/Paris", currency="EUR")
    added = cli(
        {**env, "METRICX_CONNECT_TOKEN": "tp-valid-token"},
        "connections",
        "add",
        workspace["id"],
        "testprovider",
        "acct-cli",
        "--config",
        f"base_url={sim.url}",
        "--no-backfill",
        "--json",
    )
    conn = json.loads(added.stdout)
    assert (conn["timezone"], conn["currency"]) == ("Europe/Paris", "EUR")
    assert "tp-valid-token" not in added.stdout + added.stderr
    listed = json.loads(cli(env, "connections", "list", "--json").stdout)
    assert [c["id"] for c in listed] == [conn["id"]]

    worker_process(DATABASE_URL=env["DATABASE_URL"])
    synced = cli(env, "sync", conn["id"], "--mode", "backfill", "--wait", "--timeout", "90")
    out = synced.stdout
    assert "sync enqueued: sync:" in out
    assert "━" in out and "3/3" in out, out  # the progress bar, finished: 3 of 3 slices
    assert "sync complete: 540 rows" in out

    status = cli(env, "status").stdout
    assert conn["id"] in status and "idle" in status and "1/1" in status
    assert "90/90 days" in status  # coverage: every day of the backfill horizon is stored


def test_bad_input_prints_one_line_and_exits_non_zero(metricx_env: Any) -> None:
    env = {**os.environ, **metricx_env.env}
    for args, words in [
        (("sync", "not-a-uuid"), "must be a UUID"),
        (("sync", str(uuid.uuid4())), "does not exist"),
        (("keys", "create", str(uuid.uuid4())), "does not exist"),
        (
            ("connections", "add", str(uuid.uuid4()), "myspace", "acct", "--config", "oops"),
            "key=value",
        ),
    ]:
        proc = cli({**env, "METRICX_CONNECT_TOKEN": "t"}, *args, check=False)
        assert proc.returncode == 1, proc
        assert words in proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_connections_add_reports_a_rejected_token(metricx_env: Any, sim: Any) -> None:
    env = {**os.environ, **metricx_env.env, "METRICX_CONNECT_TOKEN": "expired-token"}
    workspace = json.loads(cli(env, "workspaces", "create", "Rejected", "--json").stdout)
    proc = cli(
        env,
        "connections",
        "add",
        workspace["id"],
        "testprovider",
        "acct-x",
        "--config",
        f"base_url={sim.url}",
        check=False,
    )
    assert proc.returncode == 1 and "reconnect" in proc.stderr.lower()
    assert "expired-token" not in proc.stderr and "Traceback" not in proc.stderr


def test_plugins_shows_each_providers_api_version_and_sunset(metricx_env: Any) -> None:
    env = {**os.environ, **metricx_env.env, "COLUMNS": "250"}
    rows = {row["name"]: row for row in json.loads(cli(env, "plugins", "--json").stdout)}
    assert rows["testprovider"]["api_versions"] == {
        "testprovider": {"version": "v1", "sunset": None, "days_left": None, "status": "supported"}
    }
    table = cli(env, "plugins")
    assert "testprovider v1" in table.stdout
    if "meta" in rows:  # the built-in plugins, when installed, declare their versions (see each provider)
        assert rows["meta"]["api_versions"]["meta"]["version"] == "v26.0"
        assert "meta v26.0" in table.stdout  # Marketing v26.0 has no published sunset yet
    if "google" in rows and rows["google"]["api_versions"]["google"]["status"] == "sunset":
        assert "warning: provider 'google' speaks API" in " ".join(table.stderr.split())
