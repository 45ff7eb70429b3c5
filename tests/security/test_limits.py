"""Limits (issue 19 item 6): bodies refused early per route, failed API-key attempts throttled per
address, the operator key long enough. Real app, PostgreSQL and Redis."""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from core.config import Settings
from tests.integration.test_api_support import Tenant

MB = 1024 * 1024


class Chunks:
    """A 60 MB chunked body that counts how much of it the server pulled."""

    def __init__(self, chunks: int = 60) -> None:
        self.chunks = chunks
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.sent += 1
            yield b"x" * MB


@pytest.mark.parametrize(
    "path",
    ["/v1/workspaces/00000000-0000-0000-0000-000000000000/connections", "/v1/plugins/shopify/webhooks"],
)
async def test_a_60_mb_chunked_body_is_refused_before_it_is_read(
    api: httpx.AsyncClient, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metricx_shopify.settings import get_shopify_settings

    monkeypatch.setenv("METRICX_SHOPIFY_WEBHOOK_SECRET", "shpss-limits-secret")
    get_shopify_settings.cache_clear()
    body = Chunks()
    response = await api.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "body_too_large"
    assert response.headers["x-request-id"] == response.json()["error"]["request_id"]
    assert body.sent <= 6, f"the server read {body.sent} MB before refusing"
    get_shopify_settings.cache_clear()


async def test_a_declared_length_over_the_limit_is_refused_at_once(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    big = b"{" + b" " * (2 * MB) + b"}"
    response = await api.post(tenant.url("/connections"), content=big, headers=tenant.headers)
    assert response.status_code == 413 and "1048576 bytes" in response.json()["error"]["message"]
    # A store webhook may be larger than an API body (orders), up to its own limit.
    hook = await api.post("/v1/plugins/shopify/webhooks", content=big)
    assert hook.status_code != 413


async def test_failed_key_attempts_are_throttled_per_address(
    metricx_env: Any, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, redis_client: Any, caplog: Any
) -> None:
    from core.api import create_app
    from core.config import get_settings
    from core.keys import auth_failures

    before = os.environ.get("METRICX_AUTH_MAX_FAILURES")
    monkeypatch.setenv("METRICX_AUTH_MAX_FAILURES", "5")
    get_settings.cache_clear()
    app = create_app()
    attacker = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    neighbour = httpx.ASGITransport(app=app, client=("203.0.113.8", 40000))
    url = tenant.url("/connections")
    try:
        async with httpx.AsyncClient(transport=attacker, base_url="http://t") as guesser:
            codes = [
                (await guesser.get(url, headers={"Authorization": f"Bearer guess-{i}"})).status_code
                for i in range(5)
            ]
            assert codes == [401] * 5
            with caplog.at_level(logging.WARNING):
                blocked = await guesser.get(url, headers={"Authorization": "Bearer guess-6"})
            assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) >= 1
            assert "too many failed" in blocked.json()["error"]["message"]
            assert "auth_throttled" in caplog.text and "203.0.113.7" in caplog.text
            # Even the right key waits: a guess that hits must not be told so.
            assert (await guesser.get(url, headers=tenant.headers)).status_code == 429
        async with httpx.AsyncClient(transport=neighbour, base_url="http://t") as other:
            assert (await other.get(url, headers=tenant.headers)).status_code == 200
    finally:
        await redis_client.delete(auth_failures("203.0.113.7"), auth_failures("203.0.113.8"))
        if before is None:
            monkeypatch.delenv("METRICX_AUTH_MAX_FAILURES")
        else:
            monkeypatch.setenv("METRICX_AUTH_MAX_FAILURES", before)
        get_settings.cache_clear()
        await app.state.resources.aclose()


async def test_an_address_that_succeeded_is_still_throttled_once_it_starts_guessing(
    metricx_env: Any, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, redis_client: Any
) -> None:
    # The sync route reads the failed-key counter at most once a second for an address with no
    # failures; a failure from it must count and throttle at once, as for any other address.
    from core.api import create_app
    from core.config import get_settings
    from core.keys import auth_failures

    before = os.environ.get("METRICX_AUTH_MAX_FAILURES")
    monkeypatch.setenv("METRICX_AUTH_MAX_FAILURES", "3")
    get_settings.cache_clear()
    app = create_app()
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
    sync = tenant.url(f"/connections/{uuid.uuid4()}/sync")
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.post(sync, headers=tenant.headers)).status_code == 404  # key accepted
            guesses = [
                (await client.post(sync, headers={"Authorization": f"Bearer guess-{i}"})).status_code
                for i in range(3)
            ]
            assert guesses == [401] * 3
            blocked = await client.post(sync, headers=tenant.headers)
            assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) >= 1
    finally:
        await redis_client.delete(auth_failures("203.0.113.9"))
        if before is None:
            monkeypatch.delenv("METRICX_AUTH_MAX_FAILURES")
        else:
            monkeypatch.setenv("METRICX_AUTH_MAX_FAILURES", before)
        get_settings.cache_clear()
        await app.state.resources.aclose()


def test_the_operator_key_has_a_minimum_length() -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(operator_key="short-key")  # type: ignore[arg-type]
    assert "at least 16 characters" in str(raised.value) and "short-key" not in str(raised.value)
    assert Settings(operator_key="a-long-enough-operator-key").operator_key is not None  # type: ignore[arg-type]


def test_redis_cert_reqs_is_validated_in_every_mode() -> None:
    with pytest.raises(ValidationError, match="required, optional or none"):
        Settings(redis_ssl_cert_reqs="bogus", redis_url="rediss+sentinel://h:26379/m/0")
    assert json.dumps(Settings(redis_ssl_cert_reqs="optional").redis_ssl_cert_reqs) == '"optional"'


async def test_the_throttle_fails_open_when_redis_is_down(
    metricx_env: Any, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """Keys live in PostgreSQL: a Redis outage stops the counting (logged), not the API's reads."""
    from core.api import create_app
    from core.config import get_settings

    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("METRICX_REDIS_CONN_RETRIES", "0")
    get_settings.cache_clear()
    app = create_app()
    try:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            with caplog.at_level(logging.WARNING):
                ok = await client.get(tenant.url("/connections"), headers=tenant.headers)
                bad = await client.get(tenant.url("/connections"), headers={"Authorization": "Bearer nope"})
        assert ok.status_code == 200 and bad.status_code == 401
        assert "auth_throttle_unavailable" in caplog.text
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        await app.state.resources.aclose()
