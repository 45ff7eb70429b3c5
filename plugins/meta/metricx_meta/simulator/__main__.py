"""``python -m metricx_meta.simulator --host 127.0.0.1 --port 8081``: serve the simulator with uvicorn."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import date

import uvicorn

from metricx_meta.simulator import DEFAULT_TOKEN, SimState, create_app
from metricx_meta.simulator.data import Account


def main(argv: list[str] | None = None, accounts: Callable[[date], list[Account]] | None = None) -> None:
    """Serve the simulator; ``accounts`` builds its accounts (default: the three default ones)."""
    parser = argparse.ArgumentParser(description="Simulated Meta Marketing API (Graph) for metricx.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    print(f"Meta simulator on http://{args.host}:{args.port} (token: {DEFAULT_TOKEN})", flush=True)
    uvicorn.run(create_app(SimState(accounts)), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
