"""Shared fixtures of the core tests: the test provider's simulator over real HTTP, and data helpers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from core.testing.http import serve_app


@dataclass
class Simulator:
    url: str
    app: Any

    def control(self, **body: Any) -> dict[str, Any]:
        return httpx.post(f"{self.url}/_control", json=body).json()


@pytest.fixture(scope="session")
def _sim_server() -> Iterator[Simulator]:
    from metricx_testprovider.simulator import create_app

    app = create_app()
    with serve_app(app) as url:
        yield Simulator(url, app)


@pytest.fixture
def sim(_sim_server: Simulator) -> Simulator:
    _sim_server.control(reset=True)
    return _sim_server


@pytest.fixture
async def make_connection(metricx_env: Any, sim: Simulator) -> Any:
    """``await make_connection(token=..., **config)`` -> (workspace_id, connection_id)."""
    from core.db.engine import session_scope
    from core.providers import Credentials
    from core.services import create_connection, create_workspace

    async def make(token: str | None = "tp-valid-token", **config: Any) -> tuple[uuid.UUID, uuid.UUID]:
        async with session_scope() as session:
            ws = await create_workspace(session, f"ws-{uuid.uuid4().hex[:6]}")
            conn = await create_connection(
                session,
                ws.id,
                "testprovider",
                f"acct-{uuid.uuid4().hex[:8]}",
                Credentials(access_token=token),
                config={"base_url": sim.url, **config},
            )
            return ws.id, conn.id

    return make


async def fetch_one(sql: str, **params: Any) -> Any:
    from sqlalchemy import text

    from core.db.engine import session_scope

    async with session_scope() as session:
        return (await session.execute(text(sql), params)).one()


async def fetch_all(sql: str, **params: Any) -> list[Any]:
    from sqlalchemy import text

    from core.db.engine import session_scope

    async with session_scope() as session:
        return list((await session.execute(text(sql), params)).all())
