"""Operator mistakes (issue 19 item 4): each is one line naming the setting or server, exit code 1,
no traceback. The commands run as real subprocesses against the session's PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from core.testing.servers import create_database, drop_database, with_database
from tests.integration.test_cli import cli

REDIS_DOWN = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def env(metricx_env: Any, tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, **metricx_env.env, "COLUMNS": "80", "METRICX_REDIS_CONN_RETRIES": "0"}
    env.pop("METRICX_CLI_LOG_LEVEL", None)
    return env


def one_line_error(proc: Any, *needles: str) -> str:
    """The command failed with exactly one line on stderr containing ``needles``, and no traceback."""
    assert proc.returncode != 0, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "error" in lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_status_with_a_database_that_does_not_exist(env: dict[str, str], metricx_env: Any) -> None:
    env["DATABASE_URL"] = with_database(metricx_env.server_url, f"missing_{uuid.uuid4().hex[:6]}")
    one_line_error(cli(env, "status", check=False), "DATABASE_URL", "has no database")


def test_status_with_postgresql_down(env: dict[str, str]) -> None:
    env["DATABASE_URL"] = "postgresql://postgres:hunter2@127.0.0.1:1/metricx"
    line = one_line_error(cli(env, "status", check=False), "PostgreSQL", "DATABASE_URL")
    assert "hunter2" not in line


async def test_sync_and_connections_add_with_redis_down(
    env: dict[str, str], make_connection: Any, sim: Any
) -> None:
    workspace_id, connection_id = await make_connection()
    env["REDIS_URL"] = REDIS_DOWN
    proc = await asyncio.to_thread(cli, env, "sync", str(connection_id), check=False)
    one_line_error(proc, "Redis", "REDIS_URL")
    env["METRICX_CONNECT_TOKEN"] = "tp-valid-token"
    add = [
        "connections",
        "add",
        str(workspace_id),
        "testprovider",
        "acct-x",
        "--config",
        f"base_url={sim.url}",
    ]
    proc = await asyncio.to_thread(cli, env, *add, check=False)
    one_line_error(proc, "Redis", "REDIS_URL")


@pytest.mark.parametrize("command", ["worker", "scheduler"])
def test_worker_and_scheduler_with_redis_down(env: dict[str, str], command: str) -> None:
    env["REDIS_URL"] = REDIS_DOWN
    one_line_error(cli(env, command, check=False, timeout=60), "Redis", "REDIS_URL")


async def test_keys_rotate_with_the_wrong_key(env: dict[str, str], make_connection: Any) -> None:
    await make_connection()  # encrypted under the session's key
    env["METRICX_ENCRYPTION_KEYS"] = Fernet.generate_key().decode()
    proc = await asyncio.to_thread(cli, env, "keys", "rotate", check=False)
    one_line_error(proc, "METRICX_ENCRYPTION_KEYS", "metricx keys rotate")
    assert "InvalidToken" not in proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["worker"],
        ["scheduler"],
        ["api", "--port", "1"],
        ["connections", "add", str(uuid.uuid4()), "testprovider", "acct-1"],
    ],
)
def test_no_encryption_key_refuses_to_start_and_writes_no_key(
    env: dict[str, str], tmp_path: Path, args: list[str]
) -> None:
    env.pop("METRICX_ENCRYPTION_KEYS")
    env["METRICX_CONNECT_TOKEN"] = "tp-valid-token"
    proc = cli_in(tmp_path, env, *args)
    one_line_error(proc, "METRICX_ENCRYPTION_KEYS", "metricx keys generate")
    assert not (tmp_path / ".metricx").exists()


def cli_in(cwd: Path, env: dict[str, str], *args: str) -> Any:
    import subprocess

    from tests.integration.test_cli import METRICX

    return subprocess.run(
        [METRICX, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_db_upgrade_on_an_empty_database_says_what_it_created(env: dict[str, str], metricx_env: Any) -> None:
    name = f"metricx_sec_{uuid.uuid4().hex[:8]}"
    asyncio.run(create_database(metricx_env.server_url, name))
    try:
        env["DATABASE_URL"] = with_database(metricx_env.server_url, name)
        out = cli(env, "db", "upgrade").stdout
        assert "created" in out and "tables in an empty database" in out and "connections" in out
        again = cli(env, "db", "upgrade").stdout
        assert "created" not in again and "database is up to date" in again
    finally:
        asyncio.run(drop_database(metricx_env.server_url, name))


@pytest.mark.parametrize(
    ("setting", "value", "needle"),
    [
        ("METRICX_OPERATOR_KEY", "short", "at least 16 characters"),
        ("METRICX_REDIS_SSL_CERT_REQS", "bogus", "required, optional or none"),
        ("METRICX_LOG_FORMAT", "xml", "console"),
    ],
)
def test_a_malformed_setting_is_one_line_naming_it(
    env: dict[str, str], setting: str, value: str, needle: str
) -> None:
    env[setting] = value
    line = one_line_error(cli(env, "status", check=False), setting, needle)
    assert value not in line.replace(setting, "")  # a rejected value (a key) is never echoed


def test_the_arq_command_without_an_encryption_key_ends_in_one_line(env: dict[str, str]) -> None:
    """`arq core.worker.WorkerSettings` (the seed's command) refuses as `metricx worker` does: the
    last word is one line naming the setting, never a traceback."""
    import subprocess
    import sys

    env.pop("METRICX_ENCRYPTION_KEYS", None)
    arq = str(Path(sys.executable).with_name("arq"))
    proc = subprocess.run(
        [arq, "core.worker.WorkerSettings"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr
    last = [line for line in proc.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("error: METRICX_ENCRYPTION_KEYS is not set"), proc.stderr
