"""A local Meta Marketing API (Graph) that behaves like the real one, for tests, demos and benchmarks.

``create_app(state)`` returns an ASGI app; ``python -m metricx_meta.simulator``
serves it with uvicorn. It speaks the shared control protocol (``core.testing.sim_app``);
faults.py says how Meta answers each fault.
"""

from __future__ import annotations

from starlette.applications import Starlette

from core.testing.sim_app import simulator_app
from metricx_meta.simulator.control import control_routes
from metricx_meta.simulator.data import Account, Entity, seed_account
from metricx_meta.simulator.graph import graph_routes
from metricx_meta.simulator.oauth import SIM_APP_ID, SIM_APP_SECRET, oauth_routes
from metricx_meta.simulator.state import DEFAULT_TOKEN, SimState, default_accounts
from metricx_meta.simulator.truth import TruthRow, truth


def create_app(state: SimState | None = None) -> Starlette:
    """The simulator as an ASGI app on the shared base; the state is reachable as ``app.state.sim``."""
    state = state or SimState()
    return simulator_app(state, oauth_routes(state) + graph_routes(state), control=control_routes(state))


__all__ = [
    "DEFAULT_TOKEN",
    "SIM_APP_ID",
    "SIM_APP_SECRET",
    "Account",
    "Entity",
    "SimState",
    "TruthRow",
    "create_app",
    "default_accounts",
    "seed_account",
    "truth",
]
