"""Google's OAuth 2.0 web-server flow as the simulator serves it (accounts.google.com in production).

``GET /o/oauth2/v2/auth`` shows a login and consent page (each requested scope a checkbox, as
Google's granular consent lets a user leave one out); Allow redirects with ``code`` and ``state``,
Deny with ``error=access_denied``. ``POST /token`` with ``grant_type=authorization_code`` checks the
code (single use, 10 minutes), the redirect URI and the PKCE verifier (S256), and answers an access
token, a refresh token (with ``access_type=offline``) and the scopes granted. Shapes:
fixtures/oauth_*.json.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.testing.oauth_sim import CodeBook, IssuedCode, consent_page, read_consent, redirect_back
from metricx_google.simulator.state import SimState


def codes_of(state: SimState) -> CodeBook:
    found = getattr(state, "_oauth_codes", None)
    if found is None:
        found = CodeBook()
        state._oauth_codes = found  # type: ignore[attr-defined]
    return found


def _invalid_grant(description: str) -> JSONResponse:
    return JSONResponse({"error": "invalid_grant", "error_description": description}, 400)


def auth_routes(state: SimState) -> list[Route]:
    async def authorize(request: Request) -> Response:
        if request.method == "GET":
            q = dict(request.query_params)
            if q.get("client_id") != state.client_id:
                return Response("Error 401: invalid_client. The OAuth client was not found.", 401)
            if q.get("response_type") != "code" or not q.get("redirect_uri"):
                return Response("Error 400: invalid_request", 400)
            keep = (
                "client_id",
                "redirect_uri",
                "state",
                "access_type",
                "code_challenge",
                "code_challenge_method",
            )
            return consent_page(
                title="Sign in with Google (simulated)",
                app=f"OAuth client {q['client_id']}",
                action=request.url.path,
                hidden={k: q.get(k, "") for k in keep},
                scopes=[s for s in q.get("scope", "").split(" ") if s],
            )
        consent = await read_consent(request)
        f = consent.fields
        if not consent.allowed:
            return redirect_back(
                f.get("redirect_uri", ""), {"error": "access_denied", "state": f.get("state", "")}
            )
        extra = {k: f.get(k, "") for k in ("access_type", "code_challenge", "code_challenge_method")}
        code = codes_of(state).issue(
            IssuedCode(f.get("client_id", ""), f.get("redirect_uri", ""), consent.scopes, state.now(), extra)
        )
        return redirect_back(
            f.get("redirect_uri", ""),
            {"code": code, "scope": " ".join(consent.scopes), "state": f.get("state", "")},
        )

    return [Route("/o/oauth2/v2/auth", authorize, methods=["GET", "POST"])]


def exchange_code(state: SimState, form: dict[str, str]) -> JSONResponse:
    """``grant_type=authorization_code`` at the token endpoint (client already checked)."""
    issued, verdict = codes_of(state).take(form.get("code", ""), state.now())
    if verdict == "unknown":
        return _invalid_grant("Malformed auth code.")
    if verdict in ("used", "expired"):
        return _invalid_grant("Bad Request")
    assert issued is not None
    if issued.redirect_uri != form.get("redirect_uri"):
        return JSONResponse({"error": "redirect_uri_mismatch", "error_description": "Bad Request"}, 400)
    challenge = issued.extra.get("code_challenge")
    if challenge:
        verifier = form.get("code_verifier", "")
        if not verifier:
            return _invalid_grant("Missing code verifier.")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if digest != challenge:
            return _invalid_grant("Invalid code verifier.")
    refresh_token = "1//sim-" + secrets.token_urlsafe(24)
    access_token, lifetime = state.mint(refresh_token)
    body: dict[str, Any] = {
        "access_token": access_token,
        "expires_in": lifetime,
        "scope": " ".join(issued.scopes),
        "token_type": "Bearer",
    }
    if issued.extra.get("access_type") == "offline":
        body["refresh_token"] = refresh_token
    return JSONResponse(body)
