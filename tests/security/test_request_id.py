"""A 500's log line carries the request id the response shows (issue 19 item 7): a quoted id finds it."""

from __future__ import annotations

import json
from typing import Any

import httpx


async def test_the_500_log_line_has_the_request_id_of_the_response(metricx_env: Any, capsys: Any) -> None:
    from core.api import create_app
    from core.config import Settings
    from core.logging import configure_logging

    app = create_app()

    async def boom() -> None:
        raise RuntimeError("the handler broke")

    app.add_api_route("/v1/_boom", boom)
    configure_logging(Settings(log_format="json"), force=True)
    try:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/v1/_boom", headers={"X-Request-ID": "quoted-by-a-user-42"})
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    finally:
        configure_logging(force=True)
        await app.state.resources.aclose()
    assert response.status_code == 500
    assert response.json()["error"]["request_id"] == "quoted-by-a-user-42"
    [failed] = [line for line in lines if line["event"] == "request_failed"]
    assert failed["request_id"] == "quoted-by-a-user-42"
    assert "RuntimeError: the handler broke" in failed["exception"]
