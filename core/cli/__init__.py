"""The ``metricx`` command line: ``core.cli:main`` is the console script (see :mod:`core.cli.app`)."""

from __future__ import annotations

from core.cli.app import app, main

__all__ = ["app", "main"]
