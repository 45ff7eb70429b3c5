"""Run a provider's simulator (an ASGI app) as its own uvicorn process on a free loopback port.

A simulator out of process is reachable by worker processes, and its memory is
not counted by the conformance suite's memory check.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from core.errors import ConfigError
from core.testing.servers import free_port


@dataclass
class SimulatorProcess:
    """A running simulator: its base URL and process."""

    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _wait_ready(sim: SimulatorProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sim.proc.poll() is not None:
            raise ConfigError(f"simulator exited with code {sim.proc.returncode}:\n{sim.output()[-2000:]}")
        try:
            httpx.get(f"{sim.url}/", timeout=0.5)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise ConfigError(f"simulator did not answer on {sim.url} within {timeout_s:g}s:\n{sim.output()[-2000:]}")


@contextmanager
def simulator_process(
    app: str,
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    factory: bool = False,
    timeout_s: float = 20.0,
) -> Iterator[SimulatorProcess]:
    """Serve ``app`` ("package.module:attribute") with uvicorn until the block ends.

    ``env`` is added to the process environment (e.g. ``PYTHONPATH`` naming where
    a plugin is installed); ``factory`` calls the attribute to build the app.
    """
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--log-level", "warning", "--lifespan", "off"] + (["--factory"] if factory else [])
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )
    sim = SimulatorProcess(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        _wait_ready(sim, timeout_s)
        yield sim
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
