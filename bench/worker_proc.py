"""A metricx worker process whose registry holds the bench provider (``BENCH_LATENCY_MS`` per call)."""

from __future__ import annotations

import os


def main() -> None:
    from arq import run_worker

    from bench.provider import BenchProvider, install
    from core.logging import configure_logging

    install(BenchProvider(latency_s=float(os.environ.get("BENCH_LATENCY_MS", "0")) / 1000))
    from core.worker import WorkerSettings

    configure_logging()
    run_worker(WorkerSettings)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
