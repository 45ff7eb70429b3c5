"""Facebook Login as the Meta simulator serves it: the login dialog, code and token exchanges.

``GET /{version}/dialog/oauth`` (www.facebook.com in production) shows a login and consent page;
Allow redirects to ``redirect_uri`` with ``code`` and ``state``, Deny with
``error=access_denied&error_reason=user_denied``. ``/{version}/oauth/access_token`` exchanges a
code (single use, 10 minutes) for a short-lived token, and ``grant_type=fb_exchange_token`` that
for a long-lived one (about 60 days). Error bodies follow fixtures/oauth_*.json.
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.testing.oauth_sim import CodeBook, IssuedCode, consent_page, read_consent, redirect_back
from metricx_meta.simulator.envelope import GraphAPIError
from metricx_meta.simulator.state import SimState

SIM_APP_ID = "sim-app-id"
SIM_APP_SECRET = "sim-app-secret"
SHORT_LIVED_S = 7200  # (unverified) a short-lived user token lives about an hour or two
LONG_LIVED_S = 5183944  # about 60 days, as the token exchange answers


class MetaOAuth:
    """The app the simulator knows, the codes it issued and the scopes of each token."""

    def __init__(self) -> None:
        self.apps = {SIM_APP_ID: SIM_APP_SECRET}
        self.codes = CodeBook()
        self.token_scopes: dict[str, tuple[str, ...]] = {}


def oauth_of(state: SimState) -> MetaOAuth:
    found = getattr(state, "_oauth", None)
    if found is None:
        found = MetaOAuth()
        state._oauth = found  # type: ignore[attr-defined]
    return found


def _error(code: int, message: str, subcode: int | None = None, type: str = "OAuthException") -> JSONResponse:
    return JSONResponse(GraphAPIError(code, message, subcode=subcode, type=type).body(), status_code=400)


def _issue(state: SimState, scopes: tuple[str, ...], lifetime_s: int) -> dict[str, Any]:
    token = "sim-user-" + secrets.token_urlsafe(16)
    state.tokens[token] = "valid"
    oauth_of(state).token_scopes[token] = scopes
    return {"access_token": token, "token_type": "bearer", "expires_in": lifetime_s}


def oauth_routes(state: SimState) -> list[Route]:
    async def dialog(request: Request) -> Response:
        q = dict(request.query_params)
        if request.method == "GET":
            if q.get("client_id") not in oauth_of(state).apps or not q.get("redirect_uri"):
                return Response("Invalid App ID or redirect_uri", status_code=400)
            hidden = {k: q.get(k, "") for k in ("client_id", "redirect_uri", "state")}
            scopes = [s for s in q.get("scope", "public_profile").replace(" ", ",").split(",") if s]
            return consent_page(
                title="Log in to Facebook (simulated)",
                app=f"App {q['client_id']}",
                action=request.url.path,
                hidden=hidden,
                scopes=scopes,
            )
        consent = await read_consent(request)
        back, app_state = consent.fields.get("redirect_uri", ""), consent.fields.get("state", "")
        if not consent.allowed:
            return redirect_back(
                back,
                {
                    "error": "access_denied",
                    "error_code": "200",
                    "error_description": "Permissions error",
                    "error_reason": "user_denied",
                    "state": app_state,
                },
            )
        code = oauth_of(state).codes.issue(
            IssuedCode(consent.fields.get("client_id", ""), back, consent.scopes, state.now())
        )
        return redirect_back(back, {"code": code, "state": app_state})

    async def access_token(request: Request) -> Response:
        q = dict(request.query_params)
        oauth = oauth_of(state)
        if oauth.apps.get(q.get("client_id", "")) != q.get("client_secret"):
            return _error(1, "Error validating client secret.", type="OAuthException")
        if q.get("grant_type") == "fb_exchange_token":
            short = q.get("fb_exchange_token", "")
            if state.token_state(short) != "valid":
                return _error(190, "Invalid OAuth access token - Cannot parse access token")
            return JSONResponse(_issue(state, oauth.token_scopes.get(short, ()), LONG_LIVED_S))
        issued, verdict = oauth.codes.take(q.get("code", ""), state.now())
        if verdict == "unknown":
            return _error(100, "Invalid verification code format.", subcode=36008)
        if verdict == "used":
            return _error(100, "This authorization code has been used.", subcode=36009)
        if verdict == "expired":
            return _error(100, "This authorization code has expired.", subcode=36007)
        assert issued is not None
        if issued.redirect_uri != q.get("redirect_uri") or issued.client_id != q.get("client_id"):
            return _error(
                100,
                "Error validating verification code. Please make sure your redirect_uri is identical to "
                "the one you used in the OAuth dialog request",
                subcode=36008,
            )
        return JSONResponse(_issue(state, issued.scopes, SHORT_LIVED_S))

    return [
        Route("/{version}/dialog/oauth", dialog, methods=["GET", "POST"]),
        Route("/{version}/oauth/access_token", access_token, methods=["GET", "POST"]),
    ]


async def permissions(state: SimState, token: str) -> dict[str, Any]:
    """``/me/permissions``: each permission the token's user granted."""
    scopes = oauth_of(state).token_scopes.get(token, ("public_profile", "ads_read"))
    return {"data": [{"permission": s, "status": "granted"} for s in scopes]}


def ad_accounts(state: SimState) -> dict[str, Any]:
    """``/me/adaccounts``: every ad account the user can reach."""
    return {
        "data": [
            {
                "account_id": a.id,
                "id": f"act_{a.id}",
                "name": a.name,
                "currency": a.currency,
                "timezone_name": a.timezone,
            }
            for a in state.accounts.values()
        ]
    }
