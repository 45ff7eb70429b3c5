"""`metricx demo` as a user runs it: real processes, every installed simulator, the story and the summary."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import pytest

from core.testing.servers import create_database, drop_database

pytestmark = pytest.mark.slow


def other_redis_db(url: str) -> str:
    """Another database of the session's Redis, derived from the session's own: sessions sharing one
    Redis (each on its own database) must not share the demo's queue, nor flush each other's data."""
    own = int(urlparse(url).path.lstrip("/") or 0)
    return urlunparse(urlparse(url)._replace(path=f"/{(own + 8) % 16}"))


def test_demo_reaches_its_summary(metricx_env: Any, tmp_path: Path) -> None:
    database = asyncio.run(create_database(metricx_env.server_url))
    redis_url = other_redis_db(metricx_env.redis_url)
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRICX_")}
    env.update(DATABASE_URL=database, REDIS_URL=redis_url, COLUMNS="200")
    metricx = str(Path(sys.executable).parent / "metricx")
    try:
        result = subprocess.run(
            [metricx, "demo", "--data-dir", str(tmp_path / "demo"), "--exit-after", "1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=170,
        )
    finally:
        asyncio.run(drop_database(metricx_env.server_url, urlparse(database).path.lstrip("/")))
        redis.Redis.from_url(redis_url).flushdb()
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    for step in ("1. Backfill", "2. Realtime", "3. Attribution", "4. Rate limit", "Summary"):
        assert step in out
    assert "fan-out: enqueued" in out
    assert "rate_limited" in out and "deferred, resumes in" in out  # the throttled account
    assert "needs reconnecting" in out  # the expired login
    assert "API key for workspace" in out and "mx_" in out
    # the attribution re-sync changed at least one past day's numbers
    changes = [line for line in out.splitlines() if "last 7 days:" in line]
    assert any(
        line.split("conversions ")[1].split(",")[0].split(" -> ")[0]
        != line.split("conversions ")[1].split(",")[0].split(" -> ")[1]
        for line in changes
    )
    assert not (tmp_path / "demo" / "pg").exists()  # real URLs given: no embedded servers started
