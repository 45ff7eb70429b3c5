"""Shopify's authorization code grant as the simulator serves it.

``GET /admin/oauth/authorize`` (on ``https://{shop}`` in production; behind a base-URL override the
``shop`` query parameter names the shop) shows the install and consent page. Allow redirects to
``redirect_uri`` with ``code``, ``hmac``, ``host``, ``shop``, ``state`` and ``timestamp``, the
``hmac`` being HMAC-SHA256 of the other parameters (sorted, ``k=v`` joined by ``&``) keyed with
the app's client secret; Deny redirects with ``error=access_denied``. ``POST /admin/oauth/
access_token`` with ``code`` (single use, 10 minutes of simulated time) and ``expiring=1`` answers
an expiring offline token and its refresh token; an unknown, used or expired code answers 400
``{"error": "invalid_request", "error_description": "The authorization code was not found or was
already used"}``, one message for all three as Shopify words it. Shapes: fixtures/oauth_*.json.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.testing.oauth_sim import CodeBook, IssuedCode, consent_page, read_consent, redirect_back
from metricx_shopify.simulator.state import SimState


def codes_of(state: SimState) -> CodeBook:
    found = getattr(state, "_oauth_codes", None)
    if found is None:
        found = CodeBook()
        state._oauth_codes = found  # type: ignore[attr-defined]
    return found


def callback_hmac(params: dict[str, str], secret: str) -> str:
    """Shopify's callback ``hmac``: hex HMAC-SHA256 of the sorted query without ``hmac``."""
    message = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in ("hmac", "signature"))
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def oauth_routes(state: SimState) -> list[Route]:
    async def authorize(request: Request) -> Response:
        if request.method == "GET":
            q = dict(request.query_params)
            shop = q.get("shop") or request.url.hostname or ""
            if shop not in state.shops:
                return Response("There's no shop at this address.", 404)
            if q.get("client_id") != state.client_id:
                return Response("Oauth error invalid_request: The client_id is invalid", 400)
            return consent_page(
                title=f"Install app on {shop} (simulated)",
                app=f"App {q['client_id']}",
                action=request.url.path,
                hidden={"shop": shop, **{k: q.get(k, "") for k in ("client_id", "redirect_uri", "state")}},
                scopes=[s for s in q.get("scope", "").split(",") if s],
            )
        consent = await read_consent(request)
        f = consent.fields
        shop = f.get("shop", "")
        if not consent.allowed:
            return redirect_back(
                f.get("redirect_uri", ""), {"error": "access_denied", "state": f.get("state", "")}
            )
        code = codes_of(state).issue(
            IssuedCode(
                f.get("client_id", ""), f.get("redirect_uri", ""), consent.scopes, state.now(), {"shop": shop}
            )
        )
        store = shop.removesuffix(".myshopify.com")
        params = {
            "code": code,
            "host": base64.b64encode(f"admin.shopify.com/store/{store}".encode()).decode().rstrip("="),
            "shop": shop,
            "state": f.get("state", ""),
            "timestamp": str(int(time.time())),
        }
        params["hmac"] = callback_hmac(params, state.client_secret)
        return redirect_back(f.get("redirect_uri", ""), params)

    return [Route("/admin/oauth/authorize", authorize, methods=["GET", "POST"])]


def exchange_code(state: SimState, domain: str, form: dict[str, str]) -> JSONResponse:
    """The authorization-code grant (client already checked)."""
    issued, verdict = codes_of(state).take(form.get("code", ""), state.now())
    if issued is None or verdict != "ok" or issued.extra.get("shop") != domain:
        return JSONResponse(
            {
                "error": "invalid_request",
                "error_description": "The authorization code was not found or was already used",
            },
            status_code=400,
        )
    if form.get("expiring") == "1":
        body = state.issue_tokens(domain)
    else:
        token = "shpat_" + hashlib.sha256(form.get("code", "").encode()).hexdigest()[:32]
        state.tokens[token] = domain
        body = {"access_token": token}
    body["scope"] = ",".join(issued.scopes)
    return JSONResponse(body)
