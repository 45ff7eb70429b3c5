"""The CLI covers a connection's lifecycle (issue 17 item 5): workspaces, keys, connections (list, pause,
resume, reconnect, delete), status and metrics. Real subprocesses against the session's PostgreSQL and
Redis, the test provider's simulator over HTTP; piped output keeps every id and name whole, and no
secret is ever printed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_api_support import truth
from tests.integration.test_cli import METRICX, cli
from tests.security.test_operator_mistakes import one_line_error

NAME = "Acme Europe, a workspace whose name is much longer than any terminal column would allow"


@pytest.fixture
def env(metricx_env: Any, tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, **metricx_env.env, "COLUMNS": "60"}
    for key in ("METRICX_CLI_LOG_LEVEL", "METRICX_CONNECT_TOKEN", "METRICX_CONNECT_REFRESH_TOKEN"):
        env.pop(key, None)
    return env


def tsv(proc: subprocess.CompletedProcess[str]) -> list[dict[str, str]]:
    """Piped table output: a header line, then one tab-separated line per row."""
    header, *lines = proc.stdout.rstrip("\n").split("\n")
    return [dict(zip(header.split("\t"), line.split("\t"), strict=True)) for line in lines]


def cli_stdin(env: dict[str, str], stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [METRICX, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


async def run(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli, env, *args, check=check)


async def test_workspaces_and_keys_list_and_revoke(env: dict[str, str]) -> None:
    ws = json.loads((await run(env, "workspaces", "create", NAME, "--json")).stdout)
    key = json.loads((await run(env, "keys", "create", ws["id"], "--name", "ci", "--json")).stdout)

    listed = {r["workspace"]: r for r in tsv(await run(env, "workspaces", "list"))}
    assert listed[ws["id"]]["name"] == NAME  # piped: full id and name, nothing cut
    assert listed[ws["id"]]["api keys"] == "1"
    assert any(
        w["id"] == ws["id"] for w in json.loads((await run(env, "workspaces", "list", "--json")).stdout)
    )

    keys = await run(env, "keys", "list", ws["id"])
    assert key["key"] not in keys.stdout  # only the prefix, never the key
    [row] = tsv(keys)
    assert (row["key"], row["name"], row["revoked"]) == (key["id"], "ci", "-")
    assert key["key"].startswith(row["prefix"])

    revoked = await run(env, "keys", "revoke", key["id"])
    assert "revoked" in revoked.stdout
    [row] = json.loads((await run(env, "keys", "list", ws["id"], "--json")).stdout)
    assert row["revoked_at"] is not None
    again = await run(env, "keys", "revoke", key["id"])
    assert "already revoked" in again.stdout
    one_line_error(await run(env, "keys", "revoke", key["key"], check=False), "key must be a UUID")


async def test_a_connection_through_its_lifecycle_from_the_cli(
    env: dict[str, str], sim: Any, run_worker: Any
) -> None:
    ws = json.loads((await run(env, "workspaces", "create", "lifecycle", "--json")).stdout)
    account = f"acct-cli-{ws['id'][:8]}"
    env_token = {**env, "METRICX_CONNECT_TOKEN": "tp-valid-token"}
    add = ["connections", "add", ws["id"], "testprovider", account, "--config", f"base_url={sim.url}"]
    added = json.loads((await run(env_token, *add, "--name", NAME, "--json")).stdout)
    cid = added["id"]
    await run_worker()  # the backfill it queued

    [row] = [r for r in tsv(await run(env, "connections", "list", "--workspace", ws["id"]))]
    assert (row["connection"], row["name"], row["sync"], row["credentials"]) == (cid, NAME, "idle", "ok")
    status = tsv(await run(env, "status", "--workspace", ws["id"]))
    assert [(r["connection"], r["name"], r["coverage"]) for r in status] == [(cid, NAME, "90/90 days")]

    # metrics: the numbers the platform reported, per day
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date()
    numbers = json.loads((await run(env, "metrics", cid, "--end", str(yesterday), "--json")).stdout)
    assert len(numbers["days"]) == 7 and numbers["level"] == "ad"
    day = numbers["days"][-1]
    assert day["metrics_date"] == str(yesterday)
    assert Decimal(day["spend"]) == truth(account, yesterday)["spend"]
    assert day["impressions"] == truth(account, yesterday)["impressions"]
    piped = tsv(await run(env, "metrics", cid, "--end", str(yesterday)))
    assert piped[-1]["day"] == str(yesterday) and Decimal(piped[-1]["spend"]) == Decimal(day["spend"])

    # pause / resume
    await run(env, "connections", "pause", cid)
    assert json.loads((await run(env, "status", "--json")).stdout)["connections"][-1]["status"] == "paused"
    await run(env, "connections", "resume", cid)

    # the platform revokes the token: a manual sync fails; reconnect fixes it, never echoing a secret
    sim.control(revoked=True)
    await run(env, "sync", cid)
    await run_worker()
    broken = json.loads((await run(env, "status", "--json")).stdout)["connections"]
    assert [c["sync_status"] for c in broken if c["id"] == cid] == ["reconnect_required"]
    sim.control(grant={"token": "tp-secret-of-another-user", "accounts": ["acct-other"]})
    wrong = await asyncio.to_thread(
        cli_stdin, env, "tp-secret-of-another-user\n", "connections", "reconnect", cid, "--stdin"
    )
    line = one_line_error(wrong, account)
    assert "tp-secret-of-another-user" not in wrong.stdout + wrong.stderr and "reach" in line
    sim.control(grant={"token": "tp-secret-new-login", "accounts": [account]})
    soon = (datetime.now(UTC) + timedelta(days=3)).isoformat()  # a token that cannot be refreshed
    fixed = await asyncio.to_thread(
        cli_stdin,
        env,
        json.dumps({"access_token": "tp-secret-new-login", "expires_at": soon}),
        "connections",
        "reconnect",
        cid,
        "--stdin",
        "--json",
    )
    assert fixed.returncode == 0, fixed.stderr
    assert "tp-secret-new-login" not in fixed.stdout + fixed.stderr
    out = json.loads(fixed.stdout)
    assert (out["id"], out["sync_status"]) == (cid, "queued")
    await run_worker()
    [row] = tsv(await run(env, "connections", "list", "--workspace", ws["id"]))
    assert (row["connection"], row["sync"], row["credentials"]) == (cid, "idle", "expires_soon")
    [row] = tsv(await run(env, "status", "--workspace", ws["id"]))
    assert row["credentials"].startswith("expires_soon (") and row["coverage"] == "90/90 days"

    # delete, keeping the data: listed as disconnected, and pause refuses with what to do
    deleted = await run(env, "connections", "delete", cid)
    assert "data kept" in deleted.stdout
    [row] = tsv(await run(env, "connections", "list", "--workspace", ws["id"]))
    assert (row["status"], row["credentials"]) == ("disconnected", "missing")
    one_line_error(await run(env, "connections", "pause", cid, check=False), "deleted", "connect")
    # deleting the data asks first; --yes skips the question
    refused = await asyncio.to_thread(cli_stdin, env, "n\n", "connections", "delete", cid, "--delete-data")
    assert refused.returncode != 0
    assert tsv(await run(env, "connections", "list", "--workspace", ws["id"]))
    await run(env, "connections", "delete", cid, "--delete-data", "--yes")
    assert (await run(env, "connections", "list", "--workspace", ws["id"])).stdout.splitlines()[1:] == []


async def test_google_needs_no_token_beside_its_refresh_token(env: dict[str, str]) -> None:
    """``connections add`` asks for an access token only when no refresh token is given (the
    connection fails here for want of a Google simulator, after the prompt would have come)."""
    ws = json.loads((await run(env, "workspaces", "create", "google", "--json")).stdout)
    env = {**env, "METRICX_CONNECT_REFRESH_TOKEN": "1//sim-refresh-token"}
    env.pop("METRICX_GOOGLE_CLIENT_ID", None)
    proc = await asyncio.to_thread(cli_stdin, env, "", "connections", "add", ws["id"], "google", "1000000003")
    assert "Token:" not in proc.stdout + proc.stderr
    assert "1//sim-refresh-token" not in proc.stdout + proc.stderr
