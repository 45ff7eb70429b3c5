"""``python -m metricx_shopify.simulator --host 127.0.0.1 --port 8083``: serve the seeded shops."""

from __future__ import annotations

import argparse

import uvicorn

from metricx_shopify.simulator import SimState, create_app
from metricx_shopify.simulator.state import PLANS


def main(argv: list[str] | None = None) -> None:
    """Parse the options and serve the simulator until interrupted."""
    parser = argparse.ArgumentParser(description="Shopify GraphQL Admin API simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8083)
    parser.add_argument("--webhook-secret", default="sim-webhook-secret", help="signs webhook deliveries")
    parser.add_argument(
        "--plan", choices=sorted(PLANS), default="standard", help="the shops' GraphQL cost bucket, by plan"
    )
    parser.add_argument("--points-bucket", type=float, help="GraphQL cost bucket size (overrides --plan)")
    parser.add_argument("--points-restore", type=float, help="GraphQL points restored per second")
    args = parser.parse_args(argv)
    state = SimState(webhook_secret=args.webhook_secret, plan=args.plan)
    state.configure_points(args.points_bucket, args.points_restore)
    for shop in state.shops.values():
        print(f"[SHOPIFY-SIM] shop {shop.spec.domain} token {shop.spec.token}", flush=True)
    uvicorn.run(create_app(state), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
