"""Google's own control endpoints under ``/_sim/`` (reset, faults, clock, requests and truth are the
shared protocol of core.testing.sim_app; ``GET /_sim/truth`` answers with :func:`truth_answer`).

GET    /_sim/stats
GET    /_sim/accounts                 POST /_sim/accounts {customer_id?, name?, time_zone?, ...}
POST   /_sim/accounts/{customer_id}/entities/{level}/{entity_id}   {"status": "PAUSED"}
POST   /_sim/revoke {"refresh_token"}      POST /_sim/expire_tokens
POST   /_sim/config {"token_lifetime_s"?, "min_version"?, "daily_operations"?, "refresh_idle_s"?}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from datetime import date
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.testing.simulator import SimulatorError
from metricx_google.simulator.state import SimState
from metricx_google.simulator.world import LEVELS, Account, truth


def account_summary(account: Account) -> dict[str, Any]:
    """An account as the control API shows it."""
    return {
        "customer_id": account.customer_id,
        "name": account.name,
        "time_zone": account.time_zone,
        "currency_code": account.currency_code,
        "manager": account.manager,
        "manager_id": account.manager_id,
        "status": account.status,
        "campaigns": account.campaigns,
        "ad_groups_per_campaign": account.ad_groups_per_campaign,
        "ads_per_ad_group": account.ads_per_ad_group,
        "pmax_campaigns": account.pmax_campaigns,
        "shared_ads": account.shared_ads,
        "hidden": account.hidden,
    }


def truth_rows(
    state: SimState, customer_id: str, level: str, since: date, until: date
) -> list[dict[str, Any]]:
    """Ground truth for the control API: exact numbers as strings, sorted by date then entity id."""
    account = state.accounts[customer_id]
    numbers = truth(account, level, since, until, state.now())
    rows = []
    for (entity_id, day), n in sorted(numbers.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        rows.append(
            {
                "entity_id": entity_id,
                "date": day.isoformat(),
                "impressions": n.impressions,
                "clicks": n.clicks,
                "cost_micros": str(n.cost_micros),
                "spend": str(Decimal(n.cost_micros).scaleb(-6)),
                "conversions": str(n.conversions),
                "conversions_value": str(n.conversions_value),
            }
        )
    return rows


def truth_answer(state: SimState, params: Mapping[str, str]) -> dict[str, Any]:
    """``GET /_sim/truth``: an account's exact numbers at ``level`` over ``since..until`` right now."""
    customer, level = params.get("customer") or params.get("account", ""), params.get("level", "")
    if customer not in state.accounts or level not in LEVELS:
        raise SimulatorError("customer must be a known account and level one of campaign, ad_group, ad")
    try:
        since, until = date.fromisoformat(params["since"]), date.fromisoformat(params["until"])
    except (KeyError, ValueError):
        raise SimulatorError("since and until must be YYYY-MM-DD") from None
    account = state.accounts[customer]
    return {
        "customer_id": customer,
        "level": level,
        "currency_code": account.currency_code,
        "time_zone": account.time_zone,
        "today": account.today(state.now()).isoformat(),
        "rows": truth_rows(state, customer, level, since, until),
    }


def _bad(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    data = await request.json()
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    return data


def control_routes(state: SimState) -> list[Route]:
    """Google's own /_sim/ routes bound to ``state``."""

    async def stats(request: Request) -> Response:
        return JSONResponse({"token_mints": 0, "api_calls": 0, **state.stats})

    async def accounts(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse([account_summary(a) for a in state.accounts.values()])
        try:
            account = state.add_account(await _body(request))
        except (ValueError, TypeError) as exc:
            return _bad(str(exc))
        return JSONResponse(account_summary(account), 201)

    async def entity_status(request: Request) -> Response:
        p = request.path_params
        account = state.accounts.get(p["customer_id"])
        status = (await _body(request)).get("status")
        if account is None or p["level"] not in LEVELS:
            return _bad("unknown account or level", 404)
        if status not in ("ENABLED", "PAUSED", "REMOVED"):
            return _bad("status must be ENABLED, PAUSED or REMOVED")
        try:
            entity = account.set_status(p["level"], p["entity_id"], status)
        except KeyError as exc:
            return _bad(str(exc), 404)
        return JSONResponse(asdict(entity))

    async def revoke(request: Request) -> Response:
        token = (await _body(request)).get("refresh_token")
        if not token:
            return _bad("refresh_token is required")
        state.revoked.add(str(token))
        return JSONResponse({"revoked": True})

    async def expire_tokens(request: Request) -> Response:
        return JSONResponse({"expired": state.expire_tokens()})

    async def config(request: Request) -> Response:
        data = await _body(request)
        if "token_lifetime_s" in data:
            state.token_lifetime_s = int(data["token_lifetime_s"])
        if "min_version" in data:
            state.min_version = int(data["min_version"])
        if "refresh_idle_s" in data:
            idle = data["refresh_idle_s"]
            state.refresh_idle_s = None if idle is None else int(idle)
        if "daily_operations" in data:
            state.daily_operations = (
                None if data["daily_operations"] is None else int(data["daily_operations"])
            )
        return JSONResponse(
            {
                "token_lifetime_s": state.token_lifetime_s,
                "min_version": state.min_version,
                "daily_operations": state.daily_operations,
            }
        )

    return [
        Route("/_sim/stats", stats, methods=["GET"]),
        Route("/_sim/accounts", accounts, methods=["GET", "POST"]),
        Route("/_sim/accounts/{customer_id}/entities/{level}/{entity_id}", entity_status, methods=["POST"]),
        Route("/_sim/revoke", revoke, methods=["POST"]),
        Route("/_sim/expire_tokens", expire_tokens, methods=["POST"]),
        Route("/_sim/config", config, methods=["POST"]),
    ]
