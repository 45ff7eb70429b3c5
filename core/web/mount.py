"""Mount the dashboard, the docs pages and their static files on the API app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from core.web import connect, docs, routes

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Mount the dashboard, the docs pages and their assets on ``app``."""
    app.include_router(routes.router)
    app.include_router(connect.router)
    app.include_router(docs.router)
    app.mount("/_static/web", StaticFiles(directory=STATIC), name="web-static")
    app.mount(docs.DOCS_PREFIX, StaticFiles(directory=docs.DOCS_STATIC), name="docs-static")
