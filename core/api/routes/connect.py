"""The OAuth connect flow over HTTP: start, the platform's callback, list and pick the accounts found."""

from __future__ import annotations

import html
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from core.api.deps import HttpDep, PrincipalDep, RedisDep, SessionDep, WorkspaceDep
from core.api.errors import ApiError, conflict, documented, provider_error
from core.api.routes.connections import public
from core.api.schemas import NO_NUL, ConnectionPublic, InputModel, SyncEnqueued
from core.errors import MetricxError
from core.oauth import ConnectError
from core.providers import SyncMode
from core.services import ConnectionExists, ProviderNotInstalled, enqueue_syncs
from core.services.connect import (
    accounts_found,
    authorized_session,
    complete_callback,
    start_connect,
)

router = APIRouter(prefix="/workspaces/{workspace_id}/connect/{provider}", tags=["connect"])
callback_router = APIRouter(prefix="/connect/{provider}", tags=["connect"])


class ConnectStartBody(InputModel):
    """Optional parameters of a connect flow."""

    shop: str | None = Field(
        default=None, max_length=255, pattern=NO_NUL, description="Shopify: the shop domain."
    )
    reconnect: uuid.UUID | None = Field(
        default=None, description="Give this connection the new credentials instead of picking accounts."
    )


class ConnectStarted(BaseModel):
    session_id: uuid.UUID
    authorization_url: str
    expires_at: Any


class AccountFound(BaseModel):
    external_account_id: str
    name: str | None
    currency: str | None
    timezone: str | None
    connectable: bool
    note: str | None
    already_connected: bool
    connection_id: uuid.UUID | None


class AccountsFound(BaseModel):
    session_id: uuid.UUID
    provider: str
    accounts: list[AccountFound]


class AccountsPick(InputModel):
    accounts: list[Annotated[str, Field(max_length=128, pattern=NO_NUL)]] = Field(
        min_length=1, max_length=200
    )
    backfill: bool = True


class AccountsPicked(BaseModel):
    connections: list[ConnectionPublic]
    backfills: list[SyncEnqueued]


def connect_error(exc: ConnectError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message)


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=ConnectStarted, responses=documented(404, 422)
)
async def start(
    provider: str,
    workspace: WorkspaceDep,
    principal: PrincipalDep,
    session: SessionDep,
    body: Annotated[ConnectStartBody, Body(default_factory=ConnectStartBody)],
) -> ConnectStarted:
    """Start connecting accounts: open ``authorization_url`` in a browser, log in and consent; the
    platform sends you back to the callback. The URL works once, for a few minutes."""
    params = {"shop": body.shop} if body.shop else {}
    try:
        started = await start_connect(
            session,
            workspace_id=workspace.id,
            api_key_id=principal.key_id,
            provider=provider,
            params=params,
            reconnect=body.reconnect,
        )
    except ConnectError as exc:
        raise connect_error(exc) from None
    return ConnectStarted(
        session_id=started.session_id,
        authorization_url=started.authorization_url,
        expires_at=started.expires_at,
    )


@router.get("/accounts", response_model=AccountsFound, responses=documented(404, 409))
async def list_accounts(
    provider: str,
    workspace: WorkspaceDep,
    principal: PrincipalDep,
    session: SessionDep,
    connect_session: Annotated[uuid.UUID | None, Query(alias="session")] = None,
) -> AccountsFound:
    """The accounts the flow's credentials reach: name, currency, timezone, already connected or not."""
    try:
        row = await authorized_session(
            session,
            workspace_id=workspace.id,
            api_key_id=principal.key_id,
            provider=provider,
            session_id=connect_session,
        )
    except ConnectError as exc:
        raise connect_error(exc) from None
    found = await accounts_found(session, row)
    return AccountsFound(session_id=row.id, provider=provider, accounts=[AccountFound(**a) for a in found])


@router.post(
    "/accounts",
    status_code=status.HTTP_201_CREATED,
    response_model=AccountsPicked,
    responses=documented(404, 409, 422),
)
async def pick(
    provider: str,
    workspace: WorkspaceDep,
    principal: PrincipalDep,
    session: SessionDep,
    http: HttpDep,
    redis: RedisDep,
    body: AccountsPick,
    connect_session: Annotated[uuid.UUID | None, Query(alias="session")] = None,
) -> AccountsPicked:
    """Connect the accounts picked: one connection each, sharing the flow's credentials; a backfill each."""
    from core.services.connect import pick_accounts

    try:
        row = await authorized_session(
            session,
            workspace_id=workspace.id,
            api_key_id=principal.key_id,
            provider=provider,
            session_id=connect_session,
        )
        created = await pick_accounts(session, row, body.accounts, http=http, redis=redis)
    except ConnectError as exc:
        raise connect_error(exc) from None
    except ProviderNotInstalled as exc:
        raise ApiError(422, "provider_not_installed", exc.message) from None
    except ConnectionExists as exc:
        raise conflict("connection_exists", exc.message) from None
    except MetricxError as exc:
        raise provider_error(exc) from None
    await session.commit()
    backfills: list[SyncEnqueued] = []
    if body.backfill:
        results = await enqueue_syncs(session, redis, created, SyncMode.backfill)
        backfills = [
            SyncEnqueued(**r, connection_id=c.id, mode=SyncMode.backfill)
            for c, r in zip(created, results, strict=True)
        ]
        await session.commit()
    for connection in created:
        await session.refresh(connection)
    return AccountsPicked(connections=[public(c) for c in created], backfills=backfills)


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:46rem;margin:3rem auto;padding:0 1rem}}
table{{border-collapse:collapse}}td,th{{padding:.3rem .8rem;border-bottom:1px solid #ddd;text-align:left}}
.error{{color:#a00}}code{{background:#f4f4f4;padding:.1rem .3rem}}</style></head>
<body><h1 id="title">{title}</h1>{body}</body></html>"""


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=html.escape(title), body=body), status_code=status_code)


@callback_router.get("/callback", response_model=None, responses=documented(404))
async def callback(provider: str, request: Request, http: HttpDep) -> Response:
    """Where the platform sends the browser back: checks the state, exchanges the code, lists the
    accounts found (HTML, or JSON with ``Accept: application/json``). No key: the state is the proof."""
    query = {k: v[:2048] for k, v in request.query_params.items()}
    try:
        row = await complete_callback(http, provider[:64], query)
    except ConnectError as exc:
        if _wants_json(request):
            return JSONResponse({"error": {"code": exc.code, "message": exc.message}}, status_code=exc.status)
        body = (
            f'<p class="error" id="error" data-code="{html.escape(exc.code)}">{html.escape(exc.message)}</p>'
        )
        return _page("Connection not made", body, exc.status)
    except MetricxError as exc:
        err = provider_error(exc)
        if _wants_json(request):
            return JSONResponse(
                {"error": {"code": err.code, "message": err.message}}, status_code=err.status_code
            )
        return _page(
            "Connection not made", f'<p class="error" id="error">{html.escape(err.message)}</p>', 502
        )
    data = {
        "session_id": str(row.id),
        "provider": provider,
        "workspace_id": str(row.workspace_id),
        "status": row.status,
        "reconnected_connection_id": str(row.reconnect_connection_id)
        if row.reconnect_connection_id
        else None,
        "reconnected": [str(c) for c in row.params.get("reconnected", [])],
        # shared the old login, not reached by this one: each needs its own reconnect
        "not_reconnected": [str(c) for c in row.params.get("not_reconnected", [])],
        "accounts": [{k: v for k, v in a.items() if k != "config"} for a in row.accounts],
    }
    if _wants_json(request):
        return JSONResponse(data)
    title = "Reconnected" if row.reconnect_connection_id else "Accounts found"
    return _page(title, _accounts_html(data))


def _accounts_html(data: dict[str, Any]) -> str:
    if data["reconnected_connection_id"]:
        items = "".join(
            f'<li><a href="/dashboard/connections/{c}"><code>{c}</code></a></li>' for c in data["reconnected"]
        )
        left = "".join(
            f'<li><a href="/dashboard/connections/{c}"><code>{c}</code></a></li>'
            for c in data["not_reconnected"]
        )
        missed = (
            '<p id="not-reconnected">These connections shared the old sign-in but this one cannot '
            f"reach their accounts; reconnect each with a login that can:</p><ul>{left}</ul>"
            if left
            else ""
        )
        return (
            f'<p id="reconnected">These connections have new credentials:</p><ul>{items}</ul>{missed}'
            '<p><a id="back-to-dashboard" href="/dashboard">Back to the dashboard</a></p>'
        )
    rows = "".join(
        f'<tr class="account" data-id="{html.escape(a["external_account_id"])}">'
        f"<td>{html.escape(a['external_account_id'])}"
        f"</td><td>{html.escape(a['name'] or '')}</td><td>{html.escape(a['currency'] or '')}</td>"
        f"<td>{html.escape(a['timezone'] or '')}</td><td>{html.escape(a['note'] or '')}</td></tr>"
        for a in data["accounts"]
    )
    session_id = data["session_id"]
    return (
        f'<p>Signed in. Connect session <code id="session-id">{session_id}</code> found these accounts:</p>'
        f"<table><tr><th>id</th><th>name</th><th>currency</th><th>timezone</th><th></th></tr>{rows}</table>"
        f'<p><a id="pick-in-dashboard" href="/dashboard/connect/{html.escape(data["provider"])}/accounts?'
        f'session={session_id}">Pick the accounts to connect in the dashboard</a>, or pick them with '
        f"<code>metricx connect {html.escape(data['provider'])} -w {data['workspace_id']} "
        f"--session {session_id}"
        f" --account ID</code>, or <code>POST /v1/workspaces/{data['workspace_id']}/connect/"
        f"{html.escape(data['provider'])}/accounts?session={session_id}</code>.</p>"
    )
