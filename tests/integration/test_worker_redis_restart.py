"""A real worker process rides through a Redis restart: it does not exit, and runs jobs once Redis is back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from core.embedded import embedded_redis, free_port
from core.enqueue import enqueue_sync_job
from tests.integration.test_worker_process import wait_for

pytestmark = pytest.mark.slow


async def test_worker_survives_a_redis_restart(
    make_connection: Any, worker_process: Any, tmp_path: Path
) -> None:
    port = free_port()
    url, server = embedded_redis(tmp_path / "redis", port)
    worker = worker_process(REDIS_URL=url)
    try:
        server.terminate()
        server.wait(10)
        await asyncio.sleep(4)  # arq's poll loop used to die within a second or two of this
        assert worker.proc.poll() is None, worker.output()[-2000:]
        url, server = embedded_redis(tmp_path / "redis", port)  # empty: no persistence
        deadline = time.monotonic() + 15
        while "redis_reconnected" not in worker.output() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert "redis_unavailable" in worker.output() and "redis_reconnected" in worker.output()

        ws, conn = await make_connection()
        client = Redis.from_url(url)
        try:
            await enqueue_sync_job(str(conn), str(ws), redis=client)
        finally:
            await client.aclose()
        row = await wait_for(
            "SELECT total_syncs_succeeded AS n FROM connections WHERE id = :c", lambda r: r.n == 1, c=conn
        )
        assert row.n == 1
        assert worker.proc.poll() is None
    finally:
        worker.stop()
        server.terminate()
        server.wait(10)
