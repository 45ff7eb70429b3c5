"""The dashboard's pages and forms: sign in/out, connections, one connection, its actions, live partials.

Pages are server-rendered (Jinja2); ``static/dashboard.js`` refreshes the live
parts by fetching the ``/_live`` partials. Every form carries the session's CSRF
token; actions call the same route functions as the REST API.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from core.api.deps import ConnectionRef, RedisDep, SessionDep
from core.api.errors import ApiError
from core.api.guards import auth_guard
from core.api.routes import connections as connection_routes
from core.api.schemas import SyncRequest
from core.db.models import Connection
from core.oauth import ConnectError
from core.services import summary
from core.services.connect import start_connect
from core.web import sessions, views
from core.web.sessions import LOGIN_CSRF_COOKIE, SESSION_COOKIE, WebSession

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
router = APIRouter(include_in_schema=False)
ACTIONS = ("sync", "pause", "resume", "reconnect")
# The dashboard loads only its own files: a page cannot pull anything from another host.
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'; form-action 'self'"


async def current_session(request: Request, session: SessionDep, redis: RedisDep) -> WebSession | None:
    """The signed-in session of the request's cookie, if any."""
    return await sessions.load_session(redis, session, request.cookies.get(SESSION_COOKIE))


CurrentDep = Annotated[WebSession | None, Depends(current_session)]


async def form(request: Request) -> dict[str, str]:
    """The urlencoded form body (first value of each field)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def page(request: Request, name: str, context: dict[str, object], status_code: int = 200) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-store"
    return response


def to_login() -> RedirectResponse:
    return RedirectResponse("/login", status_code=303)


@router.get("/")
async def home() -> RedirectResponse:
    """The dashboard is the home page."""
    return RedirectResponse("/dashboard", status_code=307)


@router.get("/login")
async def login_form(request: Request, web: CurrentDep) -> Response:
    if web is not None:
        return RedirectResponse("/dashboard", status_code=303)
    return _login_page(request)


def _login_page(request: Request, error: str | None = None, status_code: int = 200) -> HTMLResponse:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or sessions.new_csrf()
    response = page(request, "login.html", {"csrf": token, "error": error}, status_code)
    sessions.set_cookie(request, response, LOGIN_CSRF_COOKIE, token, 3600)
    return response


@router.post("/login")
async def login(request: Request, session: SessionDep, redis: RedisDep) -> Response:
    """Exchange a workspace API key (form field, never the URL) for a session cookie."""
    fields = await form(request)
    if not sessions.csrf_matches(request.cookies.get(LOGIN_CSRF_COOKIE), fields.get("csrf")):
        return _login_page(request, "The form expired; please sign in again.", 403)
    guard = await auth_guard(request)
    try:
        await guard.check()
    except ApiError as exc:
        return _login_page(request, exc.message, 429)
    key = await sessions.key_for(session, fields.get("api_key", "").strip())
    if key is None:
        await guard.record_failure()
        return _login_page(request, "That API key is unknown or revoked.", 401)
    token = await sessions.start_session(redis, key)
    response = RedirectResponse("/dashboard", status_code=303)
    sessions.set_cookie(request, response, SESSION_COOKIE, token, sessions.SESSION_TTL_S)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return response


@router.post("/logout")
async def logout(request: Request, web: CurrentDep, redis: RedisDep) -> Response:
    """Sign out: the session is deleted server-side and its cookie cleared."""
    fields = await form(request)
    if web is not None and not sessions.csrf_matches(web.csrf, fields.get("csrf")):
        return Response("invalid CSRF token", status_code=403)
    await sessions.end_session(redis, request.cookies.get(SESSION_COOKIE))
    response = to_login()
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/dashboard")
async def dashboard(
    request: Request, web: CurrentDep, session: SessionDep, attention: bool = False
) -> Response:
    """The connections table (``?attention=true``: only those needing attention) and workspace totals."""
    if web is None:
        return to_login()
    rows = await views.connection_rows(session, web.workspace_id, attention_only=attention)
    since, until = summary.default_range()
    totals = await summary.workspace_summary(
        session, web.workspace_id, since, until, rates=summary.rates_from_settings()
    )
    return page(
        request, "dashboard.html", {"web": web, "rows": rows, "attention": attention, "summary": totals}
    )


@router.get("/dashboard/_live/connections")
async def live_connections(
    request: Request, web: CurrentDep, session: SessionDep, attention: bool = False
) -> Response:
    if web is None:
        return Response(status_code=401)
    rows = await views.connection_rows(session, web.workspace_id, attention_only=attention)
    return page(request, "_connections.html", {"web": web, "rows": rows, "attention": attention})


async def _owned(session: SessionDep, web: WebSession, connection_id: uuid.UUID) -> Connection | None:
    return await views.find_connection(session, web.workspace_id, connection_id)


@router.get("/dashboard/connections/{connection_id}")
async def connection_page(
    request: Request, connection_id: uuid.UUID, web: CurrentDep, session: SessionDep, notice: str = ""
) -> Response:
    """One connection: status, actions, backfill progress, sync runs and daily charts."""
    if web is None:
        return to_login()
    connection = await _owned(session, web, connection_id)
    if connection is None:
        return page(request, "not_found.html", {"web": web}, 404)
    context = await _connection_context(session, connection)
    return page(request, "connection.html", {"web": web, "notice": _notice(notice), **context})


async def _connection_context(session: SessionDep, connection: Connection) -> dict[str, object]:
    runs = await views.recent_runs(session, connection)
    return {
        "row": views.connection_row(connection),
        "runs": runs,
        "progress": views.backfill_progress(runs),
        "charts": await views.charts(session, connection),
    }


@router.get("/dashboard/connections/{connection_id}/_live")
async def live_connection(
    request: Request, connection_id: uuid.UUID, web: CurrentDep, session: SessionDep
) -> Response:
    if web is None:
        return Response(status_code=401)
    connection = await _owned(session, web, connection_id)
    if connection is None:
        return Response(status_code=404)
    context = await _connection_context(session, connection)
    return page(request, "_connection_live.html", {"web": web, **context})


@router.post("/dashboard/connections/{connection_id}/{action}")
async def act(
    request: Request,
    connection_id: uuid.UUID,
    action: str,
    web: CurrentDep,
    session: SessionDep,
    redis: RedisDep,
) -> Response:
    """Sync now, pause or resume through the REST API's own handlers; reconnect starts the connect flow."""
    if web is None:
        return to_login()
    fields = await form(request)
    if not sessions.csrf_matches(web.csrf, fields.get("csrf")):
        return Response("invalid CSRF token", status_code=403)
    connection = await _owned(session, web, connection_id)
    if connection is None or action not in ACTIONS:
        return page(request, "not_found.html", {"web": web}, 404)
    if action == "reconnect":
        return await _reconnect(request, web, session, connection, fields)
    notice = await _perform(session, redis, connection, action)
    target = request.url_for("connection_page", connection_id=connection.id).include_query_params(
        notice=notice
    )
    return RedirectResponse(str(target.path) + "?" + target.query, status_code=303)


# What the page says after an action; the URL carries only the code, so no text can be injected.
NOTICES = {
    "paused": "Paused: no syncs until you resume.",
    "resumed": "Resumed: syncing on schedule again.",
    "queued": "Sync queued.",
    "already_queued": "A sync is already queued or running.",
    "connection_paused": "The connection is paused; resume it first.",
    "reconnect_required": "The platform rejected the token: use Reconnect to log in at the platform again.",
    "connection_disconnected": "The connection was disconnected; connect the account again.",
}


def _notice(code: str) -> str:
    if not code:
        return ""
    return NOTICES.get(code, "That action is not possible in the connection's current state.")


async def _reconnect(
    request: Request, web: WebSession, session: SessionDep, connection: Connection, fields: dict[str, str]
) -> Response:
    """Start the connect flow for this connection (``reconnect=<id>``): a page with the link to the
    platform's login; the callback gives the connection the new tokens, keeping its id and history."""
    params = {"shop": fields["shop"]} if fields.get("shop") else {}
    try:
        started = await start_connect(
            session,
            workspace_id=web.workspace_id,
            api_key_id=web.key_id,
            provider=connection.provider,
            params=params,
            reconnect=connection.id,
        )
    except ConnectError as exc:
        return page(request, "connect_error.html", {"web": web, "message": exc.message}, exc.status)
    context = {
        "web": web,
        "provider": connection.provider,
        "url": started.authorization_url,
        "reconnect": views.connection_row(connection),
    }
    return page(request, "connect_start.html", context)


async def _perform(session: SessionDep, redis: RedisDep, connection: Connection, action: str) -> str:
    try:
        if action == "pause":
            await connection_routes.pause(connection, session)
            return "paused"
        if action == "resume":
            await connection_routes.resume(connection, session)
            return "resumed"
        ref = ConnectionRef(connection.id, connection.workspace_id, connection.status, connection.sync_status)
        result = await connection_routes.sync_connection_ref(ref, session, redis, SyncRequest().mode)
    except ApiError as exc:
        return exc.code
    if result.status == "already_queued":
        return "already_queued"
    return "queued"
