"""pytest plugin (entry point ``pytest11``): real PostgreSQL + Redis, a migrated database, workers.

Fixtures:
- ``metricx_env``: a fresh migrated database and a Redis for the session; sets
  ``DATABASE_URL``, ``REDIS_URL``, keys and a session-unique queue in ``os.environ``.
- ``redis_client``: an async Redis client for that Redis.
- ``run_worker``: run queued jobs with an in-process arq worker until the queue is empty.
- ``worker_process``: start ``arq core.worker.WorkerSettings`` as a real process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from core.testing.servers import create_database, drop_database, test_servers, with_database


@dataclass
class MetricxEnv:
    """Where the session's servers are, and the environment a worker process needs."""

    database_url: str
    redis_url: str
    server_url: str
    database: str
    env: dict[str, str] = field(default_factory=dict)


def _apply(env: dict[str, str]) -> None:
    os.environ.update(env)
    from core.config import get_settings
    from core.plugins import reset_registry

    get_settings.cache_clear()
    reset_registry()


def _flush_redis(url: str) -> None:
    """The test Redis starts empty: rate-limit blocks or jobs of an earlier run must not leak in."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


@pytest.fixture(scope="session")
def metricx_env() -> Iterator[MetricxEnv]:
    data_dir = Path(os.environ.get("METRICX_TEST_DATA_DIR", ".metricx/test"))
    server_url, redis_url = test_servers(data_dir)
    name = f"metricx_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(create_database(server_url, name))
    database_url = with_database(server_url, name)
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "METRICX_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "METRICX_OPERATOR_KEY": "test-operator-key",
        "METRICX_QUEUE_NAME": f"arq:queue:test:{uuid.uuid4().hex[:8]}",
        "METRICX_RETRY_BASE_S": "0.5",
        "METRICX_RETRY_MAX_S": "3",
        "METRICX_LOG_LEVEL": "INFO",
        # Tests queue exactly the syncs they assert on; the reconcile pass is tested on its own.
        "METRICX_RECONCILE_ON_STARTUP": "false",
        # Every test calls from 127.0.0.1 and many send bad keys on purpose: throttling failed keys
        # per address is tested on its own (tests/security/test_limits.py sets a low bound).
        "METRICX_AUTH_MAX_FAILURES": "1000000",
    }
    _flush_redis(redis_url)
    saved = {k: os.environ.get(k) for k in env}
    _apply(env)
    from core.db.migrate import upgrade

    upgrade(database_url)
    yield MetricxEnv(database_url, redis_url, server_url, name, env)
    asyncio.run(drop_database(server_url, name))
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
async def redis_client(metricx_env: MetricxEnv) -> AsyncIterator[Any]:
    from redis.asyncio import Redis

    client = Redis.from_url(metricx_env.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def run_worker(metricx_env: MetricxEnv) -> Callable[..., Any]:
    """``await run_worker()`` runs queued jobs in-process and returns the worker.

    It stops once no job is running and none is due within ``horizon_s`` (default
    10 s): retries and short throttle deferrals run, while a job deferred far ahead
    (a daily quota, a fan-out's next pass) stays queued instead of stalling the test.
    ``max_burst_jobs=N`` runs exactly N jobs instead.
    """

    async def run(*, horizon_s: float = 10.0, **overrides: Any) -> Any:
        import asyncio

        from arq.worker import Worker, get_kwargs

        from core.worker import WorkerSettings

        bounded = "max_burst_jobs" in overrides
        kwargs = {
            **get_kwargs(WorkerSettings),  # type: ignore[arg-type]
            "burst": bounded,
            "poll_delay": 0.05,
            "handle_signals": False,
            **overrides,
        }
        worker = Worker(**kwargs)
        main = asyncio.ensure_future(worker.main())
        try:
            while not main.done():
                await asyncio.sleep(0.1)
                if not bounded and worker.job_counter == 0 and not await _due_soon(worker, horizon_s):
                    break
            if main.done():
                main.result()
        finally:
            if not main.done():
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await main
            await worker.close()
        return worker

    return run


async def _due_soon(worker: Any, horizon_s: float) -> bool:
    if worker._pool is None:  # still starting up
        return True
    now_ms = time.time() * 1000
    return bool(await worker.pool.zcount(worker.queue_name, "-inf", now_ms + horizon_s * 1000))


class ManagedProcess:
    """A real child process (worker, scheduler, API) whose output goes to a log file."""

    name = "process"

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited early:\n{self.output()[-3000:]}")
            time.sleep(0.05)
        raise AssertionError(f"{self.name} never printed {text!r}:\n{self.output()[-3000:]}")

    def stop(self, sig: int | None = None) -> int:
        """Send ``sig`` (default SIGTERM), wait (SIGKILL after 20 s); returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig if sig is not None else signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return int(self.proc.returncode)


class WorkerProcess(ManagedProcess):
    """A real ``arq core.worker.WorkerSettings`` process."""

    name = "worker"

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        super().__init__([sys.executable, "-m", "arq", "core.worker.WorkerSettings"], env, log_path)


@pytest.fixture
def worker_process(metricx_env: MetricxEnv, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """``worker_process(**env_overrides)`` starts a real worker; all are stopped after the test."""
    started: list[WorkerProcess] = []

    def start(**overrides: str) -> WorkerProcess:
        env = {**os.environ, **metricx_env.env, **overrides}
        proc = WorkerProcess(env, tmp_path / f"worker-{len(started)}.log")
        started.append(proc)
        proc.wait_for("Listening on")
        return proc

    yield start
    for proc in started:
        proc.stop()


@contextmanager
def plugin_environment(env: Mapping[str, str], *, redis_url: str | None = None) -> Iterator[None]:
    """Point installed plugins at test servers: set ``env`` (e.g. a simulator's base URL), reload the
    registry so providers read it, and, given ``redis_url``, forget rate-limit blocks before and after
    (a daily quota recorded by one test must not throttle the next)."""
    from core.plugins import reset_registry

    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    reset_registry()
    if redis_url:
        forget_rate_limits(redis_url)
    try:
        yield
    finally:
        if redis_url:
            forget_rate_limits(redis_url)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_registry()


def forget_rate_limits(redis_url: str) -> None:
    """Drop every account's rate-limit state (blocks, usage, pacing) from the test Redis."""
    import redis

    from core.keys import RATE_LIMIT_PREFIX

    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(f"{RATE_LIMIT_PREFIX}:*"):
            client.delete(key)
    finally:
        client.close()
