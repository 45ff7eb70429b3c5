"""A tiny HTTP API with deterministic numbers and switchable faults (control: POST /_control).

Fault switches: ``transient`` (count of 503s on metrics), ``rate_limit_s`` (429 on metrics),
``revoked`` (401 on every call, as for a token revoked on the platform), ``slow_s``, ``malformed``.
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

VALID_TOKEN = "tp-valid-token"
PAGE = 50


def ad_numbers(account: str, ad: str, day: date, revision: int = 0) -> dict[str, Any]:
    """Ground truth: the totals the API reports for one ad and day."""
    seed = sum(map(ord, account + ad)) + day.toordinal()
    impressions = 100 + seed % 900
    clicks = impressions // 20
    conversions = clicks // 5 + revision
    return {
        "impressions": impressions,
        "clicks": clicks,
        "spend": f"{impressions * 0.0125:.2f}",
        "conversions": str(conversions),
        "revenue": f"{conversions * 19.99:.2f}",
    }


class State:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.faults: dict[str, Any] = {}
        self.campaigns = 2
        self.ads_per_campaign = 3
        self.timezone = "UTC"
        self.currency = "USD"
        self.revision = 0
        self.paused: set[str] = set()
        self.calls = 0

    def ads(self) -> list[tuple[str, str]]:
        return [(f"c{c}", f"c{c}a{a}") for c in range(self.campaigns) for a in range(self.ads_per_campaign)]


def create_app() -> FastAPI:
    app = FastAPI()
    state = State()
    app.state.sim = state

    async def fault(authorization: str | None, kind: str) -> JSONResponse | None:
        state.calls += 1
        if state.faults.get("slow_s"):
            await asyncio.sleep(float(state.faults["slow_s"]))
        if authorization != f"Bearer {VALID_TOKEN}" or state.faults.get("revoked"):
            return JSONResponse({"error": "token expired or revoked"}, status_code=401)
        if kind == "metrics" and state.faults.get("transient", 0) > 0:
            state.faults["transient"] -= 1
            return JSONResponse({"error": "backend unavailable"}, status_code=503)
        if kind == "metrics" and state.faults.get("rate_limit_s"):
            return JSONResponse(
                {"error": "throttled"},
                status_code=429,
                headers={"Retry-After": str(state.faults["rate_limit_s"])},
            )
        return None

    @app.post("/_control")
    async def control(request: Request) -> dict[str, Any]:
        body = await request.json()
        if body.pop("reset", False):
            state.reset()
        for key in ("campaigns", "ads_per_campaign", "timezone", "currency", "revision"):
            if key in body:
                setattr(state, key, body.pop(key))
        if "pause" in body:
            state.paused.add(body.pop("pause"))
        state.faults.update(body)
        return {"ok": True, "calls": state.calls}

    @app.get("/accounts/{account}")
    async def account(account: str, authorization: str | None = Header(None)) -> Any:
        return await fault(authorization, "account") or {
            "name": f"Account {account}",
            "timezone": state.timezone,
            "currency": state.currency,
        }

    @app.get("/accounts/{account}/entities")
    async def entities(account: str, authorization: str | None = Header(None)) -> Any:
        if (error := await fault(authorization, "entities")) is not None:
            return error
        rows: list[dict[str, Any]] = [
            {"level": "campaign", "id": f"c{c}", "name": f"Campaign {c}", "status": "ACTIVE"}
            for c in range(state.campaigns)
        ]
        rows += [
            {
                "level": "ad",
                "id": ad,
                "name": f"Ad {ad}",
                "status": "PAUSED" if ad in state.paused else "ACTIVE",
                "parent": camp,
            }
            for camp, ad in state.ads()
        ]
        return {"data": rows}

    @app.get("/accounts/{account}/metrics")
    async def metrics(
        account: str, since: str, until: str, page: int = 0, authorization: str | None = Header(None)
    ) -> Any:
        if (error := await fault(authorization, "metrics")) is not None:
            return error
        start, end = date.fromisoformat(since), date.fromisoformat(until)
        rows = []
        day = start
        while day <= end:
            for camp, ad in state.ads():
                rows.append(
                    {
                        "level": "ad",
                        "id": ad,
                        "date": day.isoformat(),
                        "parent": camp,
                        **ad_numbers(account, ad, day, state.revision),
                    }
                )
            day += timedelta(days=1)
        if state.faults.get("malformed") and rows:
            rows[-1]["impressions"] = state.faults.get("malformed_value", "lots")
        chunk = rows[page * PAGE : (page + 1) * PAGE]
        more = (page + 1) * PAGE < len(rows)
        return {"data": chunk, "next": page + 1 if more else None}

    return app


app = create_app()
