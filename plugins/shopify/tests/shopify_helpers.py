"""Helpers shared by the Shopify plugin's tests (a uniquely named module: ``conftest`` is ambiguous
when several test trees run in one session)."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from core.testing.servers import free_port

WEBHOOK_SECRET = "test-webhook-secret"

# Small pages, short backoffs and fast bulk polls: the same dynamics as in production, sooner.
FAST_ENV = {
    "METRICX_SHOPIFY_PAGE_SIZE": "10",
    "METRICX_SHOPIFY_RETRY_BACKOFF_S": "0.05",
    "METRICX_SHOPIFY_CURSOR_OVERLAP_S": "0",
    "METRICX_SHOPIFY_BULK_POLL_S": "0.05",
    "METRICX_SHOPIFY_WEBHOOK_SECRET": WEBHOOK_SECRET,
    "METRICX_SHOPIFY_CLIENT_ID": "sim-client-id",
    "METRICX_SHOPIFY_CLIENT_SECRET": "sim-client-secret",
}


def serve(app: Any) -> tuple[str, uvicorn.Server, threading.Thread]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}", server, thread


async def fetch_one(sql: str, **params: Any) -> Any:
    from sqlalchemy import text

    from core.testing.harness import session_scope

    async with session_scope() as session:
        return (await session.execute(text(sql), params)).one()


async def fetch_all(sql: str, **params: Any) -> list[Any]:
    from sqlalchemy import text

    from core.testing.harness import session_scope

    async with session_scope() as session:
        return list((await session.execute(text(sql), params)).all())


def same_shape(fixture: Any, answer: Any) -> None:
    """Every key the fixture has, the answer has with the same kind of value (lists by their first)."""
    if isinstance(fixture, dict):
        assert isinstance(answer, dict), (fixture, answer)
        for key, value in fixture.items():
            assert key in answer, key
            if value is not None and answer[key] is not None:
                same_shape(value, answer[key])
    elif isinstance(fixture, list) and fixture and answer:
        same_shape(fixture[0], answer[0])
    elif fixture is not None and answer is not None:
        assert isinstance(answer, type(fixture)) or {type(fixture), type(answer)} <= {int, float}, (
            fixture,
            answer,
        )
