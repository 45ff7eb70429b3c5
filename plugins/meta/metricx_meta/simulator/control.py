"""Control endpoints under ``/_sim/``: faults, tokens, clock, accounts, entity status, ground truth."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from metricx_meta.simulator.data import Account, seed_account
from metricx_meta.simulator.state import Fault, SimState
from metricx_meta.simulator.truth import truth

Control = Callable[[SimState, Request], Awaitable[Any]]
_STATUSES = frozenset({"ACTIVE", "PAUSED", "DELETED", "ARCHIVED"})


class BadRequest(Exception):
    """A control call the simulator cannot follow; answered as HTTP 400."""


def summary(account: Account) -> dict[str, Any]:
    return {
        "account_id": account.id,
        "name": account.name,
        "timezone": account.timezone,
        "currency": account.currency,
        "campaigns": len(account.campaigns),
        "adsets": len(account.adsets),
        "ads": len(account.ads),
    }


async def _json(request: Request) -> Any:
    try:
        return await request.json() if await request.body() else {}
    except ValueError:
        raise BadRequest("body must be JSON") from None


async def reset(state: SimState, request: Request) -> Any:
    state.reset()
    return {"accounts": [summary(a) for a in state.accounts.values()]}


async def faults(state: SimState, request: Request) -> Any:
    if request.method == "DELETE":
        state.faults.clear()
    elif request.method == "POST":
        body = await _json(request)
        try:
            state.faults += [Fault.from_json(item) for item in (body if isinstance(body, list) else [body])]
        except (ValueError, TypeError) as exc:
            raise BadRequest(str(exc)) from None
    return {"faults": [fault.to_json() for fault in state.faults]}


async def tokens(state: SimState, request: Request) -> Any:
    body = await _json(request)
    token, token_state = body.get("token"), body.get("state", "valid")
    if not token or token_state not in ("valid", "expired", "invalid"):
        raise BadRequest('send {"token": "...", "state": "valid" | "expired" | "invalid"}')
    state.tokens[str(token)] = str(token_state)
    return {"token_state": token_state}


async def clock(state: SimState, request: Request) -> Any:
    if request.method == "POST":
        body = await _json(request)
        try:
            now = datetime.fromisoformat(body["now"]) if body.get("now") else None
        except ValueError:
            raise BadRequest("now must be an ISO 8601 timestamp") from None
        state.set_clock(now=now, advance_s=float(body.get("advance_s", 0)), real=bool(body.get("real")))
    return {
        "now": state.now().isoformat(),
        "frozen": state.frozen_now is not None,
        "revision": state.revision,
    }


async def advance(state: SimState, request: Request) -> Any:
    body = await _json(request)
    state.revision += int(body.get("revisions", 1))
    return {"revision": state.revision}


async def accounts(state: SimState, request: Request) -> Any:
    if request.method == "POST":
        body = await _json(request)
        try:
            account_id = str(body.pop("account_id"))
            account = seed_account(account_id, today=state.now().date(), **body)
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"bad account spec: {exc}") from None
        return summary(state.add_account(account))
    return {"accounts": [summary(a) for a in state.accounts.values()]}


async def entity_status(state: SimState, request: Request) -> Any:
    entity_id = str(request.path_params["entity_id"])
    status = str((await _json(request)).get("status", "")).upper()
    if status not in _STATUSES:
        raise BadRequest(f"status must be one of {sorted(_STATUSES)}")
    for account in state.accounts.values():
        entity = account.by_id.get(entity_id)
        if entity is not None:
            entity.status = status
            now_local = state.local_now(account)
            entity.stopped = now_local.date() if status != "ACTIVE" else None
            entity.updated = now_local.replace(tzinfo=None)
            return {"id": entity.id, "status": status, "effective_status": account.effective_status(entity)}
    raise BadRequest(f"no entity {entity_id}")


async def ground_truth(state: SimState, request: Request) -> Any:
    query = request.query_params
    try:
        since, until = date.fromisoformat(query["since"]), date.fromisoformat(query["until"])
        rows = truth(state, query["account"], query.get("level", "ad"), since, until)
    except (KeyError, ValueError) as exc:
        raise BadRequest(f"use ?account=..&level=..&since=YYYY-MM-DD&until=YYYY-MM-DD ({exc})") from None
    return {"rows": rows, "now": state.now().isoformat(), "revision": state.revision}


async def config(state: SimState, request: Request) -> Any:
    body = await _json(request)
    for key in ("async_polls_to_complete", "async_failure_rate", "usage_per_call_pct", "min_version"):
        if key in body:
            setattr(state, key, type(getattr(state, key))(body[key]))
    return {
        k: getattr(state, k)
        for k in ("async_polls_to_complete", "async_failure_rate", "usage_per_call_pct", "min_version")
    }


def _endpoint(state: SimState, handler: Control) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return JSONResponse(await handler(state, request))
        except BadRequest as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)

    return endpoint


def control_routes(state: SimState) -> list[Route]:
    """The /_sim/ routes; mount them before the Graph routes."""
    table: list[tuple[str, Control, list[str]]] = [
        ("/_sim/reset", reset, ["POST"]),
        ("/_sim/faults", faults, ["GET", "POST", "DELETE"]),
        ("/_sim/tokens", tokens, ["POST"]),
        ("/_sim/clock", clock, ["GET", "POST"]),
        ("/_sim/advance", advance, ["POST"]),
        ("/_sim/accounts", accounts, ["GET", "POST"]),
        ("/_sim/entities/{entity_id}/status", entity_status, ["POST"]),
        ("/_sim/truth", ground_truth, ["GET"]),
        ("/_sim/config", config, ["POST"]),
    ]
    return [Route(path, _endpoint(state, handler), methods=methods) for path, handler, methods in table]
