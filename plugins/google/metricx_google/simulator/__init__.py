"""A local Google Ads REST API (and OAuth token endpoint) for tests, the demo and benchmarks.

``create_app()`` returns the ASGI app; ``truth()`` / ``GET /_sim/truth`` give the
exact numbers it serves. Run it with ``python -m metricx_google.simulator``.
"""

from __future__ import annotations

from metricx_google.simulator.app import create_app
from metricx_google.simulator.control import truth_answer, truth_rows
from metricx_google.simulator.state import (
    CHILD_BERLIN_ID,
    CHILD_NY_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_REFRESH_TOKEN,
    MANAGER_ID,
    SimState,
)
from metricx_google.simulator.world import Account, DayNumbers, truth

__all__ = [
    "CHILD_BERLIN_ID",
    "CHILD_NY_ID",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_REFRESH_TOKEN",
    "MANAGER_ID",
    "Account",
    "DayNumbers",
    "SimState",
    "create_app",
    "truth",
    "truth_answer",
    "truth_rows",
]
