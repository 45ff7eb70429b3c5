"""P7: ``POST /v1/workspaces/{ws}/connections/{id}/sync`` requests/s against a bare FastAPI route.

    python -m bench.api                         # embedded PostgreSQL + Redis under .metricx/bench
    python -m bench.api --database-url postgresql://... --redis-url redis://... --seconds 5

One uvicorn process serves metricx's app with one extra route, ``POST /bare``
(returns a constant JSON body: no auth, no database), so both sides share the server,
its event loop and its middleware stack's position. A client in this process keeps
``--concurrency`` requests in flight for ``--seconds`` on one side, then the other,
interleaved. Each sync request enqueues a new job (connections round-robin; the
queue and claims are reset between rounds), as a fresh "sync now" does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from bench import common

OPERATOR_KEY = "bench-operator-key-" + uuid.uuid4().hex


def create() -> Any:
    """The app under test: metricx's, plus the bare baseline route."""
    from core.api.app import create_app

    app = create_app()

    async def bare() -> dict[str, bool]:
        return {"ok": True}

    app.add_api_route("/bare", bare, methods=["POST"])
    return app


async def tenant(base: str, connections: int) -> tuple[str, str, list[str]]:
    from sqlalchemy import text

    from core.db.engine import session_scope

    headers = {"Authorization": f"Bearer {OPERATOR_KEY}"}
    async with httpx.AsyncClient(base_url=base) as client:
        ws = (await client.post("/v1/workspaces", json={"name": "bench"}, headers=headers)).json()["id"]
        key = await client.post(f"/v1/workspaces/{ws}/api-keys", json={"name": "bench"}, headers=headers)
        api_key = key.json()["key"]
    async with session_scope() as session:
        rows = await session.execute(
            text(
                "INSERT INTO connections (id, workspace_id, provider, external_account_id, timezone, config, "
                "status, sync_status, total_syncs_attempted, total_syncs_succeeded) "
                "SELECT gen_random_uuid(), :ws, 'bench', 'acct-' || g, 'UTC', '{}'::jsonb, 'active', 'idle', "
                "0, 0 FROM generate_series(1, :n) AS g RETURNING id"
            ),
            {"ws": ws, "n": connections},
        )
        ids = [str(r[0]) for r in rows]
    return ws, api_key, ids


class RawClient:
    """A minimal keep-alive HTTP/1.1 client on asyncio streams: the load generator must cost far
    less than the server it measures (httpx capped the bare route at the client's own speed)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    async def run(
        self, seconds: float, concurrency: int, request: Callable[[int], bytes]
    ) -> tuple[float, dict[int, int]]:
        """Requests/s with ``concurrency`` connections busy for ``seconds``; the status codes seen."""
        counter = 0
        codes: dict[int, int] = {}
        deadline = time.perf_counter() + seconds

        async def one_connection() -> None:
            nonlocal counter
            reader, writer = await asyncio.open_connection(self.host, self.port)
            try:
                while time.perf_counter() < deadline:
                    i = counter
                    counter += 1
                    writer.write(request(i))
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = int(head[9:12])
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line[:15].lower() == b"content-length:":
                            length = int(line[15:])
                    await reader.readexactly(length)
                    codes[status] = codes.get(status, 0) + 1
            finally:
                writer.close()

        started = time.perf_counter()
        await asyncio.gather(*(one_connection() for _ in range(concurrency)))
        return sum(codes.values()) / (time.perf_counter() - started), codes


def post(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: bench", "Content-Length: 0"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def bench(
    base: str, port: int, rounds: int, seconds: float, concurrency: int, connections: int
) -> None:
    from bench.worker import reset
    from core.redis import create_arq_pool

    ws, api_key, ids = await tenant(base, connections)
    redis = await create_arq_pool()
    headers = {"Authorization": f"Bearer {api_key}"}
    client = RawClient("127.0.0.1", port)
    sync_requests = [post(f"/v1/workspaces/{ws}/connections/{c}/sync", headers) for c in ids]
    bare_request = post("/bare", {})

    async def sync(round_: int) -> float:
        await reset(redis)
        rate, codes = await client.run(seconds, concurrency, lambda i: sync_requests[i % len(ids)])
        assert set(codes) == {202}, codes
        return rate

    async def bare(round_: int) -> float:
        rate, codes = await client.run(seconds, concurrency, lambda i: bare_request)
        assert set(codes) == {200}, codes
        return rate

    try:
        await sync(-1)  # warm-up: connections, prepared statements
        await common.paired(
            f"P7 POST .../sync requests/s, {concurrency} in flight, one uvicorn process",
            sync,
            bare,
            rounds,
            unit="req/s",
            goal=">= 0.5",
            ours_label="sync route",
            base_label="bare FastAPI route",
        )
    finally:
        await reset(redis)
        await redis.aclose()
        await common.reset_db_engine()


def serve(port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "METRICX_OPERATOR_KEY": OPERATOR_KEY}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.api:create",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env=env,
    )


async def wait_ready(base: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=base) as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get("/v1/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("the API did not start")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    common.add_server_args(parser)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="per side per round")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--connections", type=int, default=5000)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from core.embedded import free_port

    args = parse_args(argv)
    env = common.setup(args, METRICX_OPERATOR_KEY=OPERATOR_KEY)
    port = free_port()
    server = serve(port)
    base = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(wait_ready(base))
        asyncio.run(bench(base, port, args.rounds, args.seconds, args.concurrency, args.connections))
    finally:
        server.terminate()
        server.wait(timeout=30)
        common.teardown(env)
    common.print_summary()


if __name__ == "__main__":
    main()
