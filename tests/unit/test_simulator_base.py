"""The simulator base and its control protocol, over HTTP against a minimal platform built on it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.testing.sim_app import note_account, simulator_app
from core.testing.simulator import Simulator

FROZEN = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


class Toy(Simulator):
    """A platform with one endpoint per account, rendering faults in a shape of its own."""

    extra_fault_kinds = frozenset({"teapot"})

    def __init__(self, now: datetime | None = None) -> None:
        super().__init__(now=now)
        self.seeded = 0
        self.advanced: list[tuple[datetime, datetime]] = []
        self.on_reset()

    def on_reset(self) -> None:
        self.seeded += 1

    def on_clock_advanced(self, before: datetime, after: datetime) -> None:
        self.advanced.append((before, after))

    def normalize_account(self, account: str) -> str:
        return account.removeprefix("acc_")

    def truth(self, params: Mapping[str, str]) -> Any:
        return {"account": params.get("account"), "now": self.now().isoformat()}

    async def answer(self, request: Request) -> Response:
        account, path, method = request.path_params["account"], request.url.path, request.method
        note_account(request, account)
        if (fault := self.take_fault("throttle", account, path, method)) is not None:
            return JSONResponse({"throttled": fault.params.get("scope", "account")}, 429)
        if (fault := self.take_fault("server_error", account, path, method)) is not None:
            return JSONResponse({"error": "boom"}, int(fault.params.get("status", 500)))
        if (fault := self.take_fault("timeout", account, path, method)) is not None:
            await asyncio.sleep(float(fault.params["seconds"]))
        if self.take_fault("teapot", account, path, method) is not None:
            return JSONResponse({"short": "stout"}, 418)
        return JSONResponse({"account": account, "now": self.now().isoformat()})


@pytest.fixture
def toy() -> Toy:
    return Toy(now=FROZEN)


@pytest.fixture
async def http(toy: Toy) -> AsyncIterator[httpx.AsyncClient]:
    app = simulator_app(toy, [Route("/api/{account}/{rest:path}", toy.answer, methods=["GET", "POST"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://toy") as client:
        yield client


async def statuses(http: httpx.AsyncClient, path: str, n: int, method: str = "GET") -> list[int]:
    return [(await http.request(method, path)).status_code for _ in range(n)]


async def test_faults_are_consumed_by_count(http: httpx.AsyncClient) -> None:
    armed = await http.post("/_sim/faults", json={"kind": "throttle", "scope": "app", "count": 2})
    assert armed.json()["faults"][0]["remaining"] == 2
    first = await http.get("/api/1/x")
    assert (first.status_code, first.json()) == (429, {"throttled": "app"})
    assert await statuses(http, "/api/1/x", 3) == [429, 200, 200]
    assert (await http.get("/_sim/faults")).json()["faults"][0]["remaining"] == 0


async def test_a_fault_without_count_lasts_until_cleared(http: httpx.AsyncClient) -> None:
    await http.post("/_sim/faults", json={"kind": "server_error", "status": 503, "count": None})
    assert await statuses(http, "/api/1/x", 4) == [503] * 4
    assert (await http.delete("/_sim/faults")).json() == {"faults": []}
    assert await statuses(http, "/api/1/x", 1) == [200]


async def test_filters_narrow_a_fault_to_an_account_path_and_method(http: httpx.AsyncClient) -> None:
    fault = {"kind": "throttle", "account": "acc_7", "path": "/insights", "method": "POST", "count": None}
    await http.post("/_sim/faults", json=fault)
    assert await statuses(http, "/api/7/insights", 1, "POST") == [429]  # "acc_7" is account 7
    assert await statuses(http, "/api/7/insights", 1, "GET") == [200]
    assert await statuses(http, "/api/7/campaigns", 1, "POST") == [200]
    assert await statuses(http, "/api/8/insights", 1, "POST") == [200]


async def test_several_faults_at_once_and_kinds_of_the_simulator(http: httpx.AsyncClient) -> None:
    armed = await http.post("/_sim/faults", json=[{"kind": "teapot"}, {"kind": "server_error"}])
    assert [f["kind"] for f in armed.json()["faults"]] == ["teapot", "server_error"]
    assert await statuses(http, "/api/1/x", 3) == [500, 418, 200]


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "earthquake"},
        {"kind": "throttle", "scope": "galaxy"},
        {"kind": "malformed", "mode": "poetry"},
        {"kind": "server_error", "count": "many"},
        ["not an object"],
    ],
)
async def test_a_bad_fault_is_refused_and_arms_nothing(http: httpx.AsyncClient, bad: Any) -> None:
    body = [{"kind": "throttle"}, bad] if isinstance(bad, dict) else bad
    response = await http.post("/_sim/faults", json=body)
    assert response.status_code == 400 and response.json()["detail"]
    assert (await http.get("/_sim/faults")).json() == {"faults": []}


async def test_a_duration_ends_with_simulated_time(http: httpx.AsyncClient) -> None:
    await http.post("/_sim/faults", json={"kind": "throttle", "duration_s": 60})
    assert await statuses(http, "/api/1/x", 3) == [429, 429, 429]  # every request in that minute
    await http.post("/_sim/clock", json={"advance_s": 61})
    assert await statuses(http, "/api/1/x", 1) == [200]


async def test_timeout_answers_late(http: httpx.AsyncClient) -> None:
    await http.post("/_sim/faults", json={"kind": "timeout", "seconds": 0.3})
    started = time.monotonic()
    assert (await http.get("/api/1/x")).status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    await http.get("/api/1/x")
    assert time.monotonic() - started < 0.3  # one request only


async def test_clock_advances_freezes_and_runs_real(http: httpx.AsyncClient, toy: Toy) -> None:
    assert (await http.get("/_sim/clock")).json() == {"now": FROZEN.isoformat(), "frozen": True}
    moved = (await http.post("/_sim/clock", json={"advance_s": 86400})).json()
    assert moved["now"] == (FROZEN + timedelta(days=1)).isoformat()
    assert toy.advanced == [(FROZEN, FROZEN + timedelta(days=1))]
    assert (await http.get("/api/1/x")).json()["now"] == moved["now"]  # the platform follows the clock

    later = datetime(2026, 6, 1, tzinfo=UTC)
    assert (await http.post("/_sim/clock", json={"now": later.isoformat()})).json()[
        "now"
    ] == later.isoformat()
    real = (await http.post("/_sim/clock", json={"real": True})).json()
    assert real["frozen"] is False
    assert abs(datetime.fromisoformat(real["now"]) - datetime.now(UTC)) < timedelta(seconds=5)
    await http.post("/_sim/clock", json={"advance_s": 3600})
    ahead = datetime.fromisoformat((await http.get("/_sim/clock")).json()["now"]) - datetime.now(UTC)
    assert timedelta(minutes=59) < ahead < timedelta(minutes=61)  # real time plus the offset


@pytest.mark.parametrize("body", [{"advance_s": -5}, {"advance_s": "soon"}, {"now": "yesterday"}, [1]])
async def test_bad_clock_requests_are_refused(http: httpx.AsyncClient, body: Any) -> None:
    assert (await http.post("/_sim/clock", json=body)).status_code == 400
    assert (await http.get("/_sim/clock")).json()["now"] == FROZEN.isoformat()


async def test_request_log(http: httpx.AsyncClient) -> None:
    await http.post("/_sim/faults", json={"kind": "throttle"})
    await http.get("/api/1/insights", params={"limit": "5"})
    await http.post("/api/2/campaigns")
    log = (await http.get("/_sim/requests")).json()["requests"]
    assert [(e["method"], e["path"], e["status"], e["account"]) for e in log] == [
        ("GET", "/api/1/insights", 429, "1"),
        ("POST", "/api/2/campaigns", 200, "2"),
    ]  # control requests are not logged
    assert log[0]["query"] == "limit=5" and log[0]["at"] == FROZEN.isoformat()
    after_first = (await http.get("/_sim/requests", params={"after": log[0]["seq"]})).json()["requests"]
    assert [e["path"] for e in after_first] == ["/api/2/campaigns"]
    by_path = (await http.get("/_sim/requests", params={"path": "insights"})).json()["requests"]
    assert [e["path"] for e in by_path] == ["/api/1/insights"]
    assert (await http.delete("/_sim/requests")).json() == {"requests": []}
    assert (await http.get("/_sim/requests")).json() == {"requests": []}


async def test_reset_restores_the_start(http: httpx.AsyncClient, toy: Toy) -> None:
    await http.post("/_sim/faults", json={"kind": "throttle", "count": None})
    await http.post("/_sim/clock", json={"advance_s": 7200})
    await http.get("/api/1/x")
    reset = (await http.post("/_sim/reset")).json()
    assert reset == {"reset": True, "now": FROZEN.isoformat(), "frozen": True}
    assert toy.seeded == 2  # the platform re-seeded its data
    assert (await http.get("/_sim/faults")).json() == {"faults": []}
    assert (await http.get("/_sim/requests")).json() == {"requests": []}
    assert await statuses(http, "/api/1/x", 1) == [200]


async def test_truth_is_the_simulators_own(http: httpx.AsyncClient) -> None:
    truth = (await http.get("/_sim/truth", params={"account": "9"})).json()
    assert truth == {"account": "9", "now": FROZEN.isoformat()}


async def test_a_simulator_without_truth_says_so() -> None:
    app = simulator_app(Simulator(), [])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as http:
        response = await http.get("/_sim/truth")
    assert response.status_code == 400 and "no ground truth" in response.json()["detail"]
