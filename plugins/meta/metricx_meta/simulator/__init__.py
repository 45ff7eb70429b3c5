"""A local Meta Marketing API (Graph) that behaves like the real one, for tests, demos and benchmarks.

``create_app(state)`` returns an ASGI app; ``python -m metricx_meta.simulator``
serves it with uvicorn. See the plugin README for the endpoints and faults.
"""

from __future__ import annotations

from starlette.applications import Starlette

from metricx_meta.simulator.control import control_routes
from metricx_meta.simulator.data import Account, Entity, seed_account
from metricx_meta.simulator.graph import graph_routes
from metricx_meta.simulator.state import DEFAULT_TOKEN, Fault, SimState, default_accounts
from metricx_meta.simulator.truth import TruthRow, truth


def create_app(state: SimState | None = None) -> Starlette:
    """The simulator as an ASGI app; the state is reachable as ``app.state.sim``."""
    state = state or SimState()
    app = Starlette(routes=[*control_routes(state), *graph_routes(state)])
    app.state.sim = state
    return app


__all__ = [
    "DEFAULT_TOKEN",
    "Account",
    "Entity",
    "Fault",
    "SimState",
    "TruthRow",
    "create_app",
    "default_accounts",
    "seed_account",
    "truth",
]
