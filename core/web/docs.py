"""Swagger UI and ReDoc at ``/docs`` and ``/redoc`` from assets shipped in the ``fastapi-offline`` package.

FastAPI's defaults load them from a CDN, which renders a blank page without internet.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

DOCS_STATIC = Path(str(files("fastapi_offline") / "static"))
DOCS_PREFIX = "/_static/docs"
router = APIRouter(include_in_schema=False)
# The bundles have a few hard-coded remote URLs (ReDoc's logo, Swagger's validator): the browser
# must not fetch them. Both pages use inline scripts/styles and ReDoc a blob: worker.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'"
)


def _offline(response: HTMLResponse) -> HTMLResponse:
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI for the app's OpenAPI document."""
    return _offline(
        get_swagger_ui_html(
            openapi_url=request.app.openapi_url,
            title=f"{request.app.title} - Swagger UI",
            swagger_js_url=f"{DOCS_PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_PREFIX}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},
        )
    )


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc for the app's OpenAPI document (no web fonts: they would come from Google)."""
    return _offline(
        get_redoc_html(
            openapi_url=request.app.openapi_url,
            title=f"{request.app.title} - ReDoc",
            redoc_js_url=f"{DOCS_PREFIX}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_PREFIX}/favicon.png",
            with_google_fonts=False,
        )
    )
