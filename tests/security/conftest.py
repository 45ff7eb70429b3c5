"""Fixtures of the security suite: the real app over ASGI, where a crash is a 500 response."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.integration.test_api_support import Tenant, new_tenant


@pytest.fixture
async def api(metricx_env: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app as a client sees it: an unexpected error answers 500 instead of raising in the test."""
    from core.api import create_app

    app = create_app()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://metricx.test") as client:
        yield client
    await app.state.resources.aclose()


@pytest.fixture
async def tenant(api: httpx.AsyncClient) -> Tenant:
    return await new_tenant(api)
