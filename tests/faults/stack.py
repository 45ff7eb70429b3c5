"""A metricx stack the fault tests own: embedded PostgreSQL and Redis they can stop and restart,
plus real worker, scheduler and API processes (``core.testing`` ManagedProcess)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from core.embedded import embedded_postgres, embedded_redis, free_port, with_database
from core.testing.plugin import ManagedProcess, WorkerProcess

BIN = Path(sys.executable).parent


@dataclass
class Stack:
    """PostgreSQL + Redis + processes; every method blocks until the change has happened."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    pg_url: str = ""
    redis_port: int = 0
    redis: subprocess.Popen[bytes] | None = None
    workers: list[WorkerProcess] = field(default_factory=list)
    others: list[ManagedProcess] = field(default_factory=list)
    exited: list[tuple[str, int]] = field(default_factory=list)

    # --- PostgreSQL -----------------------------------------------------------------------------

    def start_postgres(self) -> str:
        self.pg_url = embedded_postgres(self.root / "pg")
        return self.pg_url

    def stop_postgres(self) -> None:
        """Fast shutdown (open sessions are terminated, as in a failover or a restart)."""
        _pg_ctl(self.root / "pg", ["-w", "-m", "fast", "stop"])

    def restart_postgres(self) -> None:
        import embedded_postgres as ep

        server = ep.get_server((self.root / "pg").resolve())  # type: ignore[attr-defined]
        server.ensure_postgres_running()
        assert str(server.get_uri()) == self.pg_url  # same socket: clients reconnect unchanged

    # --- Redis ----------------------------------------------------------------------------------

    def start_redis(self, *, appendonly: bool) -> str:
        self.redis_port = self.redis_port or free_port()
        url, self.redis = embedded_redis(self.root / "redis", self.redis_port, appendonly=appendonly)
        return url

    def stop_redis(self) -> None:
        assert self.redis is not None
        self.redis.terminate()
        self.redis.wait(15)

    # --- processes ------------------------------------------------------------------------------

    def start_worker(self) -> WorkerProcess:
        proc = WorkerProcess({**os.environ, **self.env}, self.root / f"worker-{len(self.workers)}.log")
        proc.wait_for("Listening on", timeout_s=60)
        self.workers.append(proc)
        return proc

    def kill_worker(self, index: int) -> None:
        """SIGKILL a worker (as an OOM kill would) and start a replacement in its place."""
        self.workers[index].stop(signal.SIGKILL)
        replacement = WorkerProcess(
            {**os.environ, **self.env}, self.root / f"worker-{len(self.workers)}-r{index}.log"
        )
        replacement.wait_for("Listening on", timeout_s=60)
        self.workers[index] = replacement

    def start_scheduler(self) -> ManagedProcess:
        proc = ManagedProcess(
            [sys.executable, "-m", "core.scheduler"], {**os.environ, **self.env}, self.root / "scheduler.log"
        )
        proc.name = "scheduler"
        proc.wait_for("[SCHEDULER] Leader", timeout_s=60)
        self.others.append(proc)
        return proc

    def start_api(self) -> str:
        port = free_port()
        proc = ManagedProcess(
            [str(BIN / "metricx"), "api", "--host", "127.0.0.1", "--port", str(port)],
            {**os.environ, **self.env},
            self.root / "api.log",
        )
        proc.name = "api"
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.proc.poll() is None, proc.output()[-2000:]
            try:
                if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        self.others.append(proc)
        return url

    def processes_exited(self) -> list[tuple[str, int]]:
        """Processes that ended on their own (a SIGKILL we sent is not counted)."""
        return [
            (p.name, int(p.proc.returncode))
            for p in [*self.workers, *self.others]
            if p.proc.poll() is not None
        ]

    def stop_processes(self) -> None:
        for proc in [*self.workers, *self.others]:
            proc.stop()
        self.workers.clear()
        self.others.clear()


def _pg_ctl(pgdata: Path, args: list[str]) -> None:
    from embedded_postgres._commands import pg_ctl  # type: ignore[import-untyped]

    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(args, pgdata=pgdata.resolve(), user=user, timeout=30)


def database_url(server_url: str, name: str) -> str:
    return with_database(server_url, name)
