"""Control endpoints under ``/_sim/``: reset, accounts, faults, tokens, clock, revision, stats, truth.

POST   /_sim/reset
GET    /_sim/stats
GET    /_sim/accounts                 POST /_sim/accounts {customer_id?, name?, time_zone?, ...}
POST   /_sim/accounts/{customer_id}/entities/{level}/{entity_id}   {"status": "PAUSED"}
POST   /_sim/faults {"kind", "count"?, "retry_delay_s"?, "status"?, "code"?, "delay_s"?, "customer_id"?}
DELETE /_sim/faults
POST   /_sim/revoke {"refresh_token"}      POST /_sim/expire_tokens
POST   /_sim/config {"token_lifetime_s"?, "min_version"?}
POST   /_sim/clock {"now": ISO-8601 | null}  POST /_sim/revision {"by"?: 1}
GET    /_sim/truth?customer=..&level=campaign|ad_group|ad&since=YYYY-MM-DD&until=YYYY-MM-DD
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from metricx_google.simulator.state import FAULT_KINDS, Fault, SimState
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
    }


def truth_rows(
    state: SimState, customer_id: str, level: str, since: date, until: date
) -> list[dict[str, Any]]:
    """Ground truth for the control API: exact numbers as strings, sorted by date then entity id."""
    account = state.accounts[customer_id]
    numbers = truth(account, level, since, until, state.now(), state.revision)
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
    """Starlette routes bound to ``state``."""

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"ok": True})

    async def stats(request: Request) -> Response:
        return JSONResponse({"token_mints": 0, "api_calls": 0, **state.stats, "revision": state.revision})

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

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            state.faults.clear()
            return JSONResponse({"faults": []})
        data = await _body(request)
        if data.get("kind") not in FAULT_KINDS:
            return _bad(f"kind must be one of {FAULT_KINDS}")
        fault = Fault(
            kind=data["kind"],
            remaining=int(data.get("count", 1)),
            retry_delay_s=float(data["retry_delay_s"]) if data.get("retry_delay_s") is not None else None,
            status=int(data.get("status", 500)),
            code=str(data.get("code", "INTERNAL_ERROR")),
            delay_s=float(data.get("delay_s", 0.0)),
            customer_id=data.get("customer_id"),
        )
        state.faults.append(fault)
        return JSONResponse({"faults": [asdict(f) for f in state.faults]})

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
        return JSONResponse({"token_lifetime_s": state.token_lifetime_s, "min_version": state.min_version})

    async def clock(request: Request) -> Response:
        value = (await _body(request)).get("now")
        frozen = datetime.fromisoformat(value) if value else None
        if frozen is not None and frozen.tzinfo is None:
            return _bad("now needs a UTC offset")
        state.frozen_now = frozen
        return JSONResponse({"now": state.now().isoformat(), "frozen": state.frozen_now is not None})

    async def revision(request: Request) -> Response:
        state.revision += int((await _body(request)).get("by", 1))
        return JSONResponse({"revision": state.revision})

    async def ground_truth(request: Request) -> Response:
        q = request.query_params
        customer, level = q.get("customer", ""), q.get("level", "")
        if customer not in state.accounts or level not in LEVELS:
            return _bad("customer must be a known account and level one of campaign, ad_group, ad")
        try:
            since, until = date.fromisoformat(q["since"]), date.fromisoformat(q["until"])
        except (KeyError, ValueError):
            return _bad("since and until must be YYYY-MM-DD")
        account = state.accounts[customer]
        return JSONResponse(
            {
                "customer_id": customer,
                "level": level,
                "currency_code": account.currency_code,
                "time_zone": account.time_zone,
                "today": account.today(state.now()).isoformat(),
                "rows": truth_rows(state, customer, level, since, until),
            }
        )

    return [
        Route("/_sim/reset", reset, methods=["POST"]),
        Route("/_sim/stats", stats, methods=["GET"]),
        Route("/_sim/accounts", accounts, methods=["GET", "POST"]),
        Route("/_sim/accounts/{customer_id}/entities/{level}/{entity_id}", entity_status, methods=["POST"]),
        Route("/_sim/faults", faults, methods=["POST", "DELETE"]),
        Route("/_sim/revoke", revoke, methods=["POST"]),
        Route("/_sim/expire_tokens", expire_tokens, methods=["POST"]),
        Route("/_sim/config", config, methods=["POST"]),
        Route("/_sim/clock", clock, methods=["POST"]),
        Route("/_sim/revision", revision, methods=["POST"]),
        Route("/_sim/truth", ground_truth, methods=["GET"]),
    ]
