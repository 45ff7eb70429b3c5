"""The REST API: ``create_app()`` builds the FastAPI app served by ``metricx api``."""

from __future__ import annotations

from core.api.app import create_app

__all__ = ["create_app"]
