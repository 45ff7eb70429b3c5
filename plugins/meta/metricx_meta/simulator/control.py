"""Meta's own control endpoints under ``/_sim/``: tokens, accounts, entity status, config.

Reset, faults, clock, request log and ground truth are the shared protocol (core.testing.sim_app).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from core.testing.sim_app import control_endpoint, json_body
from core.testing.simulator import SimulatorError
from metricx_meta.simulator.data import Account, seed_account
from metricx_meta.simulator.state import SimState

Control = Callable[[SimState, Request], Awaitable[Any]]
_STATUSES = frozenset({"ACTIVE", "PAUSED", "DELETED", "ARCHIVED"})


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


async def tokens(state: SimState, request: Request) -> Any:
    body = await json_body(request)
    token, token_state = body.get("token"), body.get("state", "valid")
    if not token or token_state not in ("valid", "expired", "invalid"):
        raise SimulatorError('send {"token": "...", "state": "valid" | "expired" | "invalid"}')
    state.tokens[str(token)] = str(token_state)
    return {"token_state": token_state}


async def accounts(state: SimState, request: Request) -> Any:
    if request.method == "POST":
        body = await json_body(request)
        try:
            account_id = str(body.pop("account_id"))
            account = seed_account(account_id, today=state.now().date(), **body)
        except (KeyError, TypeError, ValueError) as exc:
            raise SimulatorError(f"bad account spec: {exc}") from None
        return summary(state.add_account(account))
    return {"accounts": [summary(a) for a in state.accounts.values()]}


async def entity_status(state: SimState, request: Request) -> Any:
    entity_id = str(request.path_params["entity_id"])
    status = str((await json_body(request)).get("status", "")).upper()
    if status not in _STATUSES:
        raise SimulatorError(f"status must be one of {sorted(_STATUSES)}")
    for account in state.accounts.values():
        entity = account.by_id.get(entity_id)
        if entity is not None:
            entity.status = status
            now_local = state.local_now(account)
            entity.stopped = now_local.date() if status != "ACTIVE" else None
            entity.updated = now_local.replace(tzinfo=None)
            return {"id": entity.id, "status": status, "effective_status": account.effective_status(entity)}
    raise SimulatorError(f"no entity {entity_id}")


_CONFIG_KEYS = (
    "async_polls_to_complete",
    "async_failure_rate",
    "usage_per_call_pct",
    "app_usage_per_call_pct",
    "min_version",
    "max_version",
)


async def config(state: SimState, request: Request) -> Any:
    """Tune the simulator; ``app_secret`` (a string, or null) makes every call require appsecret_proof."""
    body = await json_body(request)
    for key in _CONFIG_KEYS:
        if key in body:
            setattr(state, key, type(getattr(state, key))(body[key]))
    if "app_secret" in body:
        state.app_secret = str(body["app_secret"]) if body["app_secret"] else None
    return {k: getattr(state, k) for k in _CONFIG_KEYS} | {"requires_appsecret_proof": bool(state.app_secret)}


def control_routes(state: SimState) -> list[Route]:
    """Meta's own /_sim/ routes (the shared ones come from core.testing.sim_app)."""
    table: list[tuple[str, Control, list[str]]] = [
        ("/_sim/tokens", tokens, ["POST"]),
        ("/_sim/accounts", accounts, ["GET", "POST"]),
        ("/_sim/entities/{entity_id}/status", entity_status, ["POST"]),
        ("/_sim/config", config, ["POST"]),
    ]
    return [
        Route(path, control_endpoint(functools.partial(handler, state)), methods=methods)
        for path, handler, methods in table
    ]
