"""The demo's moving parts: servers (embedded or from the environment), simulators and processes."""

from __future__ import annotations

import asyncio
import ctypes
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from core.crypto import _dev_key
from core.embedded import embedded_postgres, embedded_redis, free_port, with_database
from core.errors import ConfigError

DEMO_DATABASE = "metricx"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass
class Stack:
    """Where everything runs; ``env`` is what every child process gets."""

    data_dir: Path
    database_url: str
    redis_url: str
    operator_key: str
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)

    def log_path(self, name: str) -> Path:
        return self.data_dir / "logs" / f"{name}.log"

    def start(self, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> None:
        """Start ``python -m ...`` / a console script as a child process logging to data_dir/logs."""
        self.log_path(name).parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path(name).open("ab")
        self.processes[name] = subprocess.Popen(
            args,
            env={**os.environ, **self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()) if sys.platform == "linux" else None,
        )

    def check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                tail = self.log_path(name).read_text(errors="replace")[-1500:]
                raise ConfigError(
                    f"the demo's {name} process exited ({proc.returncode}); its log ends with:\n{tail}"
                )

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 15
        for proc in self.processes.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """Linux: the child is sent SIGTERM when the demo process dies, even when it is killed.

    Children run in their own session (Ctrl-C reaches only the demo, which stops them in order);
    without this, a killed demo would leave its worker consuming the queue of a Redis it shares.
    """

    def in_child() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the demo died before prctl took effect
            os._exit(1)

    return in_child


def wait_for_port(host: str, port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.3):
                return
        except OSError:
            time.sleep(0.1)
    raise ConfigError(f"nothing answered on {host}:{port} within {timeout_s:.0f}s")


async def _ensure_database(server_url: str) -> str:
    conn = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DEMO_DATABASE)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{DEMO_DATABASE}"')
    finally:
        await conn.close()
    return with_database(server_url, DEMO_DATABASE)


def _secret(data_dir: Path, name: str) -> str:
    path = data_dir / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def build_stack(data_dir: Path) -> Stack:
    """Real URLs from the environment when set, else embedded PostgreSQL and Redis under ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        database_url = asyncio.run(_ensure_database(embedded_postgres(data_dir / "pg")))
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        redis_url, _ = embedded_redis(data_dir / "redis")
    keys = os.environ.get("METRICX_ENCRYPTION_KEYS") or _dev_key(data_dir)
    operator = os.environ.get("METRICX_OPERATOR_KEY") or _secret(data_dir, "operator.key")
    stack = Stack(data_dir, database_url, redis_url, operator)
    stack.env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "METRICX_ENCRYPTION_KEYS": keys,
        "METRICX_OPERATOR_KEY": operator,
        "METRICX_DATA_DIR": str(data_dir),
        # The demo shows a realtime cycle every minute instead of every 15.
        "METRICX_CRON_REALTIME": os.environ.get("METRICX_CRON_REALTIME", "* * * * *"),
        "METRICX_RETRY_BASE_S": os.environ.get("METRICX_RETRY_BASE_S", "2"),
        "PYTHONUNBUFFERED": "1",
    }
    return stack


def start_simulators(stack: Stack, modules: Mapping[str, str | Sequence[str]]) -> None:
    """Serve each provider's simulator as its own process on a free loopback port.

    ``modules``: provider -> its module, or its module followed by further options.
    """
    for provider, command in modules.items():
        module, *options = [command] if isinstance(command, str) else command
        port = free_port()
        stack.start(
            f"simulator-{provider}",
            [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port), *options],
        )
        stack.urls[provider] = f"http://127.0.0.1:{port}"
    for url in stack.urls.values():
        wait_for_port("127.0.0.1", int(url.rsplit(":", 1)[1]))


CLI_ENV = "cli.env"
# What the CLI needs of the demo's env; the rest (operator key, the demo's cadence) is not its business.
_NOT_FOR_CLI = {"METRICX_OPERATOR_KEY", "METRICX_CRON_REALTIME", "METRICX_RETRY_BASE_S", "PYTHONUNBUFFERED"}


def write_cli_env(stack: Stack, workspace_id: uuid.UUID) -> Path:
    """``data_dir/cli.env`` (private: it holds the encryption key): ``. cli.env`` points a shell's
    ``metricx`` at the demo's servers and simulators, with ``METRICX_DEMO_WORKSPACE`` set.

    The CLI's ``METRICX_PUBLIC_URL`` is a free loopback port of its own, not the API's: with
    ``metricx connect --listen`` the simulator's consent page sends the browser back to the CLI
    (the simulators, unlike the platforms, accept any redirect URL).
    """
    env = {k: v for k, v in stack.env.items() if k not in _NOT_FOR_CLI}
    env["METRICX_PUBLIC_URL"] = f"http://127.0.0.1:{free_port()}"
    env["METRICX_DEMO_WORKSPACE"] = str(workspace_id)
    path = stack.data_dir / CLI_ENV
    path.touch(mode=0o600)
    path.chmod(0o600)
    lines = [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())]
    path.write_text(
        "# Written by `metricx demo`: `. cli.env` points metricx at the running demo.\n"
        + "\n".join(lines)
        + "\n"
    )
    return path
