"""The dashboard's side of the connect flow: start it, then pick the accounts the callback found.

``POST /dashboard/connect/{provider}`` starts a flow for the signed-in workspace and key and shows a
link to the platform's login (a link, not a redirect: the pages' CSP keeps form submissions on this
origin). The API's callback page links to ``/dashboard/connect/{provider}/accounts?session=...``,
where the accounts are ticked and connected (one connection each, a backfill each).
"""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from core.api.deps import HttpDep, RedisDep, SessionDep
from core.errors import MetricxError
from core.oauth import ConnectError
from core.plugins import get_registry
from core.providers import SyncMode
from core.services import enqueue_syncs
from core.services.connect import accounts_found, authorized_session, pick_accounts, start_connect
from core.web import sessions
from core.web.routes import CurrentDep, form, page, templates, to_login

router = APIRouter(include_in_schema=False)


def connectors() -> list[str]:
    """Providers with a connect flow, for the dashboard's form."""
    return sorted(get_registry().connectors)


templates.env.globals["connect_providers"] = connectors


@router.post("/dashboard/connect/{provider}")
async def start(request: Request, provider: str, web: CurrentDep, session: SessionDep) -> Response:
    """Start connecting: a page with the link to the platform's login and consent."""
    if web is None:
        return to_login()
    fields = await form(request)
    if not sessions.csrf_matches(web.csrf, fields.get("csrf")):
        return Response("invalid CSRF token", status_code=403)
    params = {"shop": fields["shop"]} if fields.get("shop") else {}
    try:
        started = await start_connect(
            session, workspace_id=web.workspace_id, api_key_id=web.key_id, provider=provider, params=params
        )
    except ConnectError as exc:
        return page(request, "connect_error.html", {"web": web, "message": exc.message}, exc.status)
    context = {"web": web, "provider": provider, "url": started.authorization_url}
    return page(request, "connect_start.html", context)


@router.get("/dashboard/connect/{provider}/accounts")
async def accounts(
    request: Request,
    provider: str,
    web: CurrentDep,
    session: SessionDep,
    session_id: Annotated[uuid.UUID | None, Query(alias="session")] = None,
) -> Response:
    """The accounts a flow found, to tick the ones to connect."""
    if web is None:
        return to_login()
    try:
        row = await authorized_session(
            session,
            workspace_id=web.workspace_id,
            api_key_id=web.key_id,
            provider=provider,
            session_id=session_id,
        )
    except ConnectError as exc:
        return page(request, "connect_error.html", {"web": web, "message": exc.message}, exc.status)
    found = await accounts_found(session, row)
    context = {"web": web, "provider": provider, "session_id": row.id, "accounts": found}
    return page(request, "connect_accounts.html", context)


@router.post("/dashboard/connect/{provider}/accounts")
async def pick(
    request: Request,
    provider: str,
    web: CurrentDep,
    session: SessionDep,
    http: HttpDep,
    redis: RedisDep,
    session_id: Annotated[uuid.UUID | None, Query(alias="session")] = None,
) -> Response:
    """Connect the ticked accounts, queue their backfills, and go back to the connections."""
    if web is None:
        return to_login()
    body = (await request.body()).decode("utf-8", errors="replace")
    pairs = parse_qsl(body, keep_blank_values=True)
    fields = dict(pairs)
    if not sessions.csrf_matches(web.csrf, fields.get("csrf")):
        return Response("invalid CSRF token", status_code=403)
    chosen = [v for k, v in pairs if k == "account"]
    try:
        row = await authorized_session(
            session,
            workspace_id=web.workspace_id,
            api_key_id=web.key_id,
            provider=provider,
            session_id=session_id,
        )
        created = await pick_accounts(session, row, chosen, http=http, redis=redis)
    except MetricxError as exc:
        await session.rollback()
        status = exc.status if isinstance(exc, ConnectError) else 422
        return page(request, "connect_error.html", {"web": web, "message": exc.message}, status)
    await session.commit()
    if fields.get("backfill"):
        await enqueue_syncs(session, redis, created, SyncMode.backfill)
    return RedirectResponse("/dashboard", status_code=303)
