"""Alert webhooks end to end: a worker process, the simulator, and receivers on loopback."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from core.alerts import SIGNATURE_HEADER, verify
from core.embedded import free_port
from core.enqueue import enqueue_sync_job
from core.testing.http import serve_app
from tests.conftest import fetch_all, fetch_one

pytestmark = pytest.mark.slow
ALERT_ENV = {
    "METRICX_ALERT_WEBHOOKS_ALLOW_PRIVATE": "true",  # the receivers run on loopback
    "METRICX_ALERT_RETRY_BASE_S": "0.3",
    "METRICX_ALERT_MAX_ATTEMPTS": "3",
    "METRICX_ALERT_DELIVERY_TIMEOUT_S": "2",
}


class Receiver:
    """A webhook endpoint that records what it got (and when), optionally hanging like a dead host."""

    def __init__(self, hang_s: float = 0.0) -> None:
        self.received: list[dict[str, Any]] = []
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> dict[str, bool]:
            body = await request.body()
            self.received.append({"at": datetime.now(UTC), "headers": dict(request.headers), "body": body})
            if hang_s:
                await asyncio.sleep(hang_s)
            return {"ok": True}

        self.app = app


@pytest.fixture
def alert_env(metricx_env: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    from core.config import get_settings

    for key, value in ALERT_ENV.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield ALERT_ENV
    for key in ALERT_ENV:
        monkeypatch.delenv(key)
    get_settings.cache_clear()


async def register(workspace_id: uuid.UUID, url: str) -> tuple[uuid.UUID, str]:
    from core.alerts.webhooks import create_webhook
    from core.db.engine import session_scope

    async with session_scope() as session:
        hook, secret = await create_webhook(session, workspace_id, url)
        return hook.id, secret


async def eventually(check: Any, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


async def run_sync(ws: uuid.UUID, conn: uuid.UUID, redis: Any, expect_runs: int) -> Any:
    await enqueue_sync_job(str(conn), str(ws), redis=redis)

    async def done() -> Any:
        rows = await fetch_all(
            "SELECT status, started_at, finished_at FROM sync_runs WHERE connection_id = :c "
            "AND status IN ('complete', 'failed') ORDER BY started_at",
            c=conn,
        )
        busy = await fetch_one("SELECT sync_status FROM connections WHERE id = :c", c=conn)
        return (
            rows[-1] if len(rows) == expect_runs and busy.sync_status not in ("queued", "syncing") else None
        )

    return await eventually(done)


def events(receiver: Receiver, secret: str) -> list[dict[str, Any]]:
    """The events received, each checked to be correctly signed under ``secret``."""
    out = []
    for hit in receiver.received:
        assert verify(secret, hit["headers"][SIGNATURE_HEADER.lower()], hit["body"])
        assert not verify("whsec_other", hit["headers"][SIGNATURE_HEADER.lower()], hit["body"])
        event = json.loads(hit["body"])
        assert hit["headers"]["x-metricx-event"] == event["type"]
        out.append(event)
    return out


async def test_a_signed_event_arrives_within_one_sync_of_reconnect_required(
    alert_env: dict[str, str], make_connection: Any, worker_process: Any, redis_client: Any, sim: Any
) -> None:
    receiver = Receiver()
    with serve_app(receiver.app) as url:
        ws, conn = await make_connection()
        hook_id, secret = await register(ws, f"{url}/hook")
        worker_process(**alert_env)

        await run_sync(ws, conn, redis_client, expect_runs=1)
        await asyncio.sleep(0.5)
        assert receiver.received == []  # a healthy connection announces nothing

        sim.control(revoked=True)
        await run_sync(ws, conn, redis_client, expect_runs=2)  # this one sync ends reconnect_required
        await eventually(lambda: _true(len(receiver.received) == 1), timeout_s=10)
        (event,) = events(receiver, secret)
        assert event["type"] == "connection.reconnect_required"
        assert event["connection"]["id"] == str(conn) and event["workspace_id"] == str(ws)
        assert event["error_kind"] == "auth" and "tp-valid-token" not in json.dumps(event)

        await run_sync(ws, conn, redis_client, expect_runs=3)  # still revoked: announced once only
        sim.control(revoked=False)
        await run_sync(ws, conn, redis_client, expect_runs=4)
        # Delivery is a job of its own: on a loaded machine it may start a few seconds later.
        await eventually(lambda: _true(len(receiver.received) == 2), timeout_s=30)
        assert [e["type"] for e in events(receiver, secret)] == [
            "connection.reconnect_required",
            "connection.recovered",
        ]

    log = await fetch_all(
        "SELECT event, status, attempts, last_status_code FROM alert_deliveries WHERE webhook_id = :h "
        "ORDER BY created_at",
        h=hook_id,
    )
    assert [(r.event, r.status, r.attempts, r.last_status_code) for r in log] == [
        ("connection.reconnect_required", "delivered", 1, 200),
        ("connection.recovered", "delivered", 1, 200),
    ]


async def _true(value: bool) -> bool:
    return value


async def test_a_receiver_that_is_down_gets_retries_and_does_not_delay_syncs(
    alert_env: dict[str, str], make_connection: Any, worker_process: Any, redis_client: Any
) -> None:
    hanging = Receiver(hang_s=30)  # accepts, never answers in time
    with serve_app(hanging.app) as url:
        ws, conn = await make_connection(token="tp-revoked-token")
        hang_id, _ = await register(ws, f"{url}/hook")
        closed_id, _ = await register(ws, f"http://127.0.0.1:{free_port()}/hook")  # nothing listens
        worker_process(**alert_env)

        run = await run_sync(ws, conn, redis_client, expect_runs=1)
        assert run.status == "failed"
        # The sync was over before any delivery was tried, and took far less than one delivery timeout.
        assert (run.finished_at - run.started_at) < timedelta(
            seconds=float(alert_env["METRICX_ALERT_DELIVERY_TIMEOUT_S"])
        )
        await eventually(lambda: _true(len(hanging.received) >= 1), timeout_s=10)
        assert hanging.received[0]["at"] >= run.finished_at

        async def both_failed() -> Any:
            rows = await fetch_all(
                "SELECT webhook_id, status, attempts, last_error FROM alert_deliveries "
                "WHERE workspace_id = :w",
                w=ws,
            )
            return rows if len(rows) == 2 and all(r.status == "failed" for r in rows) else None

        rows = {r.webhook_id: r for r in await eventually(both_failed, timeout_s=40)}
    assert rows[hang_id].attempts == rows[closed_id].attempts == 3
    assert len(hanging.received) == 3  # every retry reached the (hanging) host again
    assert "Timeout" in rows[hang_id].last_error and "Connect" in rows[closed_id].last_error


async def test_webhook_api_shows_the_secret_once_and_the_delivery_log(
    alert_env: dict[str, str], make_connection: Any, tmp_path: Any
) -> None:
    from core.api.app import create_app
    from core.db.engine import session_scope
    from core.services import create_api_key

    ws, _ = await make_connection()
    async with session_scope() as session:
        _, key = await create_api_key(session, ws, "alerts")
    auth = {"Authorization": f"Bearer {key}"}
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        base = f"/v1/workspaces/{ws}/alerts"
        created = await client.post(f"{base}/webhooks", json={"url": "http://127.0.0.1:9/x"}, headers=auth)
        assert created.status_code == 201 and created.json()["secret"].startswith("whsec_")
        listed = (await client.get(f"{base}/webhooks", headers=auth)).json()
        assert [h["id"] for h in listed] == [created.json()["id"]] and "secret" not in listed[0]
        assert (await client.get(f"{base}/deliveries", headers=auth)).json() == []
        other, _ = await make_connection()
        assert (await client.get(f"/v1/workspaces/{other}/alerts/webhooks", headers=auth)).status_code == 404
        gone = await client.delete(f"{base}/webhooks/{created.json()['id']}", headers=auth)
        assert gone.status_code == 204
        assert (
            await client.delete(f"{base}/webhooks/{created.json()['id']}", headers=auth)
        ).status_code == 404


def test_cli_alerts_add_list_deliveries_remove(metricx_env: Any) -> None:
    import os

    from tests.integration.test_cli import cli

    env = {**os.environ, **metricx_env.env, "COLUMNS": "200"}
    workspace = json.loads(cli(env, "workspaces", "create", "Alerts", "--json").stdout)["id"]
    refused = cli(env, "alerts", "add", workspace, "http://127.0.0.1:9/hook", check=False)
    assert refused.returncode == 1 and "https://" in refused.stderr  # production rules by default
    added = json.loads(
        cli({**env, **ALERT_ENV}, "alerts", "add", workspace, "http://127.0.0.1:9/hook", "--json").stdout
    )
    assert added["secret"].startswith("whsec_")
    listed = json.loads(cli(env, "alerts", "list", workspace, "--json").stdout)
    assert listed == [{"id": added["id"], "url": "http://127.0.0.1:9/hook", "description": None}]
    assert json.loads(cli(env, "alerts", "deliveries", workspace, "--json").stdout) == []
    assert "removed" in cli(env, "alerts", "remove", workspace, added["id"]).stdout
    assert cli(env, "alerts", "remove", workspace, added["id"], check=False).returncode == 1


async def test_a_token_expiring_soon_is_announced_once(
    alert_env: dict[str, str], metricx_env: Any, sim: Any, run_worker: Any, redis_client: Any
) -> None:
    from core.db.engine import session_scope
    from core.providers import Credentials
    from core.services import create_connection, create_workspace

    expires = datetime.now(UTC) + timedelta(days=3)
    async with session_scope() as session:
        ws = (await create_workspace(session, "expiring")).id
        conn = (
            await create_connection(
                session,
                ws,
                "testprovider",
                f"acct-{uuid.uuid4().hex[:8]}",
                Credentials(access_token="tp-valid-token", expires_at=expires),
                config={"base_url": sim.url},
            )
        ).id
    receiver = Receiver()
    with serve_app(receiver.app) as url:
        _, secret = await register(ws, f"{url}/hook")
        for _ in range(2):  # the second sync sees the same expiry: nothing new to say
            await enqueue_sync_job(str(conn), str(ws), redis=redis_client)
            await run_worker()
        await eventually(lambda: _true(len(receiver.received) >= 1), timeout_s=10)
        await asyncio.sleep(0.5)
    (event,) = events(receiver, secret)
    assert event["type"] == "connection.token_expiring"
    assert datetime.fromisoformat(event["expires_at"]) == expires
