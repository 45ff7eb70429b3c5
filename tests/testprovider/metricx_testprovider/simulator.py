"""A tiny HTTP API with deterministic numbers and switchable faults (control: POST /_control).

Fault switches: ``transient`` (count of 503s on metrics), ``rate_limit_s`` (429 on metrics),
``revoked`` (401 on every call with the shared token, as for a token revoked on the platform),
``slow_s``, ``malformed``. ``grant`` ({"token", "accounts"}) issues another token that reaches only
those accounts (a user's login: a reconnect with it must reach the connection's account).
Shape switches: ``campaign_rows`` (also report campaign-level rows, each the sum of its ads),
``pmax_campaigns`` (campaigns without ads whose spend exists only at campaign level, like Google's
Performance Max), ``currencies`` ({account: currency}). ``GET /_sim/truth?account=&since=&until=``
gives the account's daily totals at campaign level (all its spend).
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from decimal import Decimal
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
        self.campaign_rows = False
        self.pmax_campaigns = 0
        self.currencies: dict[str, str] = {}
        self.grants: dict[str, set[str]] = {}

    def ads(self) -> list[tuple[str, str]]:
        return [(f"c{c}", f"c{c}a{a}") for c in range(self.campaigns) for a in range(self.ads_per_campaign)]

    def pmax(self) -> list[str]:
        return [f"pmax{p}" for p in range(self.pmax_campaigns)]

    def day_rows(self, account: str, day: date) -> list[dict[str, Any]]:
        """Every metrics row of one day: ads, then (switched on) campaign rows and PMax campaigns."""
        rows = [
            {"level": "ad", "id": ad, "date": day.isoformat(), "parent": camp}
            | ad_numbers(account, ad, day, self.revision)
            for camp, ad in self.ads()
        ]
        if self.campaign_rows:
            for c in range(self.campaigns):
                ads = [r for r in rows if r.get("parent") == f"c{c}"]
                rows.append({"level": "campaign", "id": f"c{c}", "date": day.isoformat()} | _sum(ads))
        rows += [
            {"level": "campaign", "id": p, "date": day.isoformat()}
            | ad_numbers(account, p, day, self.revision)
            for p in self.pmax()
        ]
        return rows


def _sum(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows' numbers added, formatted like :func:`ad_numbers`."""
    money = ("spend", "conversions", "revenue")
    out: dict[str, Any] = {k: sum(int(r[k]) for r in rows) for k in ("impressions", "clicks")}
    out.update({k: str(sum((Decimal(r[k]) for r in rows), Decimal(0))) for k in money})
    return out


def create_app() -> FastAPI:
    app = FastAPI()
    state = State()
    app.state.sim = state

    def authorized(authorization: str | None, account: str) -> bool:
        token = (authorization or "").removeprefix("Bearer ")
        if token == VALID_TOKEN:
            return not state.faults.get("revoked")
        return account in state.grants.get(token, ())

    async def fault(authorization: str | None, kind: str, account: str) -> JSONResponse | None:
        state.calls += 1
        if state.faults.get("slow_s"):
            await asyncio.sleep(float(state.faults["slow_s"]))
        if not authorized(authorization, account):
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
        for key in (
            "campaigns",
            "ads_per_campaign",
            "timezone",
            "currency",
            "revision",
            "campaign_rows",
            "pmax_campaigns",
            "currencies",
        ):
            if key in body:
                setattr(state, key, body.pop(key))
        if "grant" in body:
            grant = body.pop("grant")
            state.grants[str(grant["token"])] = set(grant["accounts"])
        if "pause" in body:
            state.paused.add(body.pop("pause"))
        state.faults.update(body)
        return {"ok": True, "calls": state.calls}

    @app.get("/accounts/{account}")
    async def account(account: str, authorization: str | None = Header(None)) -> Any:
        return await fault(authorization, "account", account) or {
            "name": f"Account {account}",
            "timezone": state.timezone,
            "currency": state.currencies.get(account, state.currency),
        }

    @app.get("/accounts/{account}/entities")
    async def entities(account: str, authorization: str | None = Header(None)) -> Any:
        if (error := await fault(authorization, "entities", account)) is not None:
            return error
        rows: list[dict[str, Any]] = [
            {"level": "campaign", "id": f"c{c}", "name": f"Campaign {c}", "status": "ACTIVE"}
            for c in range(state.campaigns)
        ]
        rows += [
            {"level": "campaign", "id": p, "name": f"PMax {p}", "status": "ACTIVE"} for p in state.pmax()
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
        if (error := await fault(authorization, "metrics", account)) is not None:
            return error
        start, end = date.fromisoformat(since), date.fromisoformat(until)
        rows = []
        day = start
        while day <= end:
            rows += state.day_rows(account, day)
            day += timedelta(days=1)
        if state.faults.get("malformed") and rows:
            rows[-1]["impressions"] = state.faults.get("malformed_value", "lots")
        chunk = rows[page * PAGE : (page + 1) * PAGE]
        more = (page + 1) * PAGE < len(rows)
        return {"data": chunk, "next": page + 1 if more else None}

    @app.get("/_sim/truth")
    async def truth(account: str, since: str, until: str) -> Any:
        """Daily totals at campaign level (every campaign, PMax included): all the account's spend."""
        start, end = date.fromisoformat(since), date.fromisoformat(until)
        days = {}
        for offset in range((end - start).days + 1):
            day = start + timedelta(days=offset)
            ads = [r for r in state.day_rows(account, day) if r["level"] == "ad"]
            pmax = [r for r in state.day_rows(account, day) if r["id"] in state.pmax()]
            days[day.isoformat()] = _sum(ads + pmax)
        return {"currency": state.currencies.get(account, state.currency), "days": days}

    return app


app = create_app()
