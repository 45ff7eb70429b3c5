"""``python -m metricx_meta.simulator --host 127.0.0.1 --port 8081``: serve the simulator with uvicorn."""

from __future__ import annotations

import argparse

import uvicorn

from metricx_meta.simulator import DEFAULT_TOKEN, create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Simulated Meta Marketing API (Graph) for metricx.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    print(f"Meta simulator on http://{args.host}:{args.port} (token: {DEFAULT_TOKEN})", flush=True)
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
