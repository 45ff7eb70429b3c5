"""``python -m metricx_google.simulator``: serve the simulated Google Ads API over HTTP."""

from __future__ import annotations

import argparse

import structlog
import uvicorn

from metricx_google.simulator.app import create_app
from metricx_google.simulator.state import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SimState

log = structlog.get_logger(__name__)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and run uvicorn until interrupted."""
    parser = argparse.ArgumentParser(description="Simulated Google Ads REST API and OAuth token endpoint")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument("--token-lifetime-s", type=int, default=3599)
    args = parser.parse_args(argv)
    state = SimState(client_id=args.client_id, client_secret=args.client_secret)
    state.token_lifetime_s = args.token_lifetime_s
    log.info("google_simulator_starting", host=args.host, port=args.port, accounts=sorted(state.accounts))
    uvicorn.run(create_app(state), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
