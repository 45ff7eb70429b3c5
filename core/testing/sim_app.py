"""The control protocol every simulator serves under ``/_sim/``, and the app that carries it.

==========================  ===============================================================
``POST /_sim/reset``        back to the seed data, real (or initial) clock, no faults, empty log
``GET /_sim/faults``        the armed faults
``POST /_sim/faults``       arm one fault (a JSON object) or several (a list); 400 if any is bad
``DELETE /_sim/faults``     disarm every fault
``GET /_sim/clock``         ``{"now", "frozen"}``
``POST /_sim/clock``        ``{"advance_s": N}`` lets time pass; ``{"now": ISO}`` freezes it there;
                            ``{"real": true}`` back to the real time
``GET /_sim/requests``      the platform requests answered (``?after=SEQ&path=SUBSTRING``)
``DELETE /_sim/requests``   empty the log
``GET /_sim/truth``         the simulator's ground truth (its own query parameters)
==========================  ===============================================================

A simulator adds its own ``/_sim/...`` routes for platform data (accounts, shops, tokens).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.testing.simulator import Simulator, SimulatorError

Handler = Callable[[Request], Awaitable[Any]]
ACCOUNT_KEY = "sim_account"


def note_account(request: Request, account: str | None) -> None:
    """Record which account a platform request concerned (shown in the request log)."""
    request.state.sim_account = account


async def json_body(request: Request) -> Any:
    """The request's JSON body ({} when empty); a :class:`SimulatorError` when it is not JSON."""
    raw = await request.body()
    if not raw:
        return {}
    try:
        return await request.json()
    except ValueError:
        raise SimulatorError("the body must be JSON") from None


def control_endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A ``/_sim`` endpoint: the handler's value as JSON, a :class:`SimulatorError` as a 400."""

    async def endpoint(request: Request) -> Response:
        try:
            return JSONResponse(await handler(request))
        except SimulatorError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)

    return endpoint


def control_routes(sim: Simulator) -> list[Route]:
    """The shared ``/_sim/`` routes bound to ``sim``."""

    async def reset(request: Request) -> Any:
        sim.reset()
        return {"reset": True, **sim.clock.to_json()}

    async def faults(request: Request) -> Any:
        if request.method == "DELETE":
            sim.clear_faults()
        elif request.method == "POST":
            body = await json_body(request)
            sim.add_faults(body if isinstance(body, list) else [body])
        return {"faults": [f.to_json() for f in sim.faults]}

    async def clock(request: Request) -> Any:
        if request.method == "POST":
            body = await json_body(request)
            if not isinstance(body, dict):
                raise SimulatorError('send {"advance_s": N}, {"now": ISO-8601} or {"real": true}')
            _move_clock(sim, body)
        return sim.clock.to_json()

    async def requests(request: Request) -> Any:
        if request.method == "DELETE":
            sim.requests.clear()
            return {"requests": []}
        query = request.query_params
        try:
            after = int(query.get("after", 0))
        except ValueError:
            raise SimulatorError("after must be a sequence number") from None
        entries = sim.requests.entries(after=after, path=query.get("path"))
        return {"requests": [e.to_json() for e in entries]}

    async def truth(request: Request) -> Any:
        return sim.truth(request.query_params)

    table: list[tuple[str, Handler, list[str]]] = [
        ("/_sim/reset", reset, ["POST"]),
        ("/_sim/faults", faults, ["GET", "POST", "DELETE"]),
        ("/_sim/clock", clock, ["GET", "POST"]),
        ("/_sim/requests", requests, ["GET", "DELETE"]),
        ("/_sim/truth", truth, ["GET"]),
    ]
    return [Route(path, control_endpoint(handler), methods=methods) for path, handler, methods in table]


def _move_clock(sim: Simulator, body: dict[str, Any]) -> None:
    if body.get("real"):
        sim.clock.run_real()
    if body.get("now"):
        try:
            moment = datetime.fromisoformat(str(body["now"]))
        except ValueError:
            raise SimulatorError("now must be an ISO 8601 timestamp") from None
        sim.clock.set(moment)
    if body.get("advance_s"):
        try:
            seconds = float(body["advance_s"])
        except (TypeError, ValueError):
            raise SimulatorError("advance_s must be a number of seconds") from None
        sim.advance(seconds)


class RequestLogMiddleware:
    """Logs every platform request (not ``/_sim``) with its final status and noted account."""

    def __init__(self, app: ASGIApp, sim: Simulator) -> None:
        self.app, self.sim = app, sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope["path"]).startswith("/_sim"):
            await self.app(scope, receive, send)
            return
        status = 500  # what the client sees when the app dies before answering
        scope.setdefault("state", {})

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.sim.requests.add(
                at=self.sim.now(),
                method=str(scope["method"]),
                path=str(scope["path"]),
                query=bytes(scope.get("query_string", b"")).decode(errors="replace"),
                status=status,
                account=scope["state"].get(ACCOUNT_KEY),
            )


def simulator_app(
    sim: Simulator, routes: Sequence[BaseRoute], *, control: Sequence[BaseRoute] = ()
) -> Starlette:
    """The ASGI app of a simulator: the shared control routes, the simulator's own ``control``
    routes, then its platform ``routes``; ``app.state.sim`` is ``sim``."""
    app = Starlette(routes=[*control_routes(sim), *control, *routes])
    app.add_middleware(RequestLogMiddleware, sim=sim)
    app.state.sim = sim
    return app
