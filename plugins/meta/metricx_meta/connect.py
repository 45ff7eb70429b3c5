"""Connecting Meta ad accounts through Facebook Login ("Manually Build a Login Flow").

Dialog ``{oauth_dialog_url}/{version}/dialog/oauth`` -> ``code`` -> ``/oauth/access_token`` (a
short-lived token) -> ``grant_type=fb_exchange_token`` (a long-lived one, about 60 days; its expiry
is stored) -> ``/me/permissions`` (``ads_read`` must be granted) -> ``/me/adaccounts``.
Shapes: fixtures/oauth_*.json.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx

from core import (
    AuthorizationRequest,
    ConnectError,
    Credentials,
    DiscoveredAccount,
    app_credentials,
    granted,
    platform_request,
)
from metricx_meta.settings import MetaSettings

NEEDED_SCOPES = ("ads_read",)
# Subcodes of error code 100 at the token endpoint that mean "this code cannot be exchanged".
CODE_SUBCODES = {36007: "expired", 36008: "invalid", 36009: "already used"}


class MetaConnector:
    """The Meta side of the core's connect flow."""

    provider = "meta"
    uses_pkce = False  # Facebook's PKCE is for its OIDC login (still in testing), not the Graph token

    def __init__(self, settings: MetaSettings | None = None) -> None:
        self._settings = settings

    @property
    def settings(self) -> MetaSettings:
        return self._settings or MetaSettings()

    def _app(self) -> tuple[str, str]:
        s = self.settings
        return app_credentials(
            "the Meta app", s.app_id, s.app_secret, ("METRICX_META_APP_ID", "METRICX_META_APP_SECRET")
        )

    def start_params(self, params: Mapping[str, str]) -> dict[str, str]:
        self._app()
        return {}

    def authorization_url(self, request: AuthorizationRequest) -> str:
        app_id, _ = self._app()
        query = {
            "client_id": app_id,
            "redirect_uri": request.redirect_uri,
            "state": request.state,
            "response_type": "code",
            "scope": self.settings.oauth_scopes,
        }
        base = self.settings.oauth_dialog_url.rstrip("/")
        return f"{base}/{self.settings.api_version}/dialog/oauth?{urlencode(query)}"

    def check_callback(self, query: Mapping[str, str], params: Mapping[str, str]) -> None:
        return None  # the state is the proof; Meta signs nothing else on the redirect

    def _url(self, path: str) -> str:
        return f"{self.settings.base_url.rstrip('/')}/{self.settings.api_version}/{path}"

    async def _get(self, http: httpx.AsyncClient, path: str, params: dict[str, str]) -> dict[str, Any]:
        response = await platform_request(http, "Meta", "GET", self._url(path), params=params)
        body = response.json() if response.content else {}
        if response.status_code >= 400 or "error" in body:
            raise _error(body.get("error") or {})
        return dict(body)

    async def _user_get(
        self, http: httpx.AsyncClient, path: str, token: str, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        _, secret = self._app()
        proof = hmac.new(secret.encode(), token.encode(), hashlib.sha256).hexdigest()
        return await self._get(
            http, path, {**(params or {}), "access_token": token, "appsecret_proof": proof}
        )

    async def exchange_code(
        self,
        http: httpx.AsyncClient,
        *,
        code: str,
        redirect_uri: str,
        code_verifier: str | None,
        params: Mapping[str, str],
    ) -> Credentials:
        app_id, secret = self._app()
        app = {"client_id": app_id, "client_secret": secret}
        short = await self._get(
            http, "oauth/access_token", {**app, "redirect_uri": redirect_uri, "code": code}
        )
        long = await self._get(
            http,
            "oauth/access_token",
            {**app, "grant_type": "fb_exchange_token", "fb_exchange_token": str(short["access_token"])},
        )
        token = str(long["access_token"])
        expires_in = long.get("expires_in")
        perms = await self._user_get(http, "me/permissions", token)
        scopes = tuple(
            str(p.get("permission")) for p in perms.get("data", []) if p.get("status") == "granted"
        )
        credentials = Credentials(
            access_token=token,
            expires_at=datetime.now(UTC) + timedelta(seconds=int(expires_in)) if expires_in else None,
            scopes=scopes,
        )
        granted(credentials, NEEDED_SCOPES)
        return credentials

    async def discover_accounts(
        self, http: httpx.AsyncClient, credentials: Credentials, params: Mapping[str, str]
    ) -> Sequence[DiscoveredAccount]:
        token = credentials.access_token or ""
        fields = {"fields": "account_id,name,currency,timezone_name", "limit": "100"}
        found: list[DiscoveredAccount] = []
        after: str | None = None
        for _ in range(50):  # 5,000 accounts at most: pages are followed by their cursor
            page = await self._user_get(
                http, "me/adaccounts", token, {**fields, **({"after": after} if after else {})}
            )
            for row in page.get("data", []):
                found.append(
                    DiscoveredAccount(
                        external_account_id=str(row.get("account_id") or row.get("id", "")),
                        name=row.get("name"),
                        currency=row.get("currency"),
                        timezone=row.get("timezone_name"),
                    )
                )
            paging = page.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after") if paging.get("next") else None
            if not after:
                break
        return found


def _error(error: Mapping[str, Any]) -> ConnectError:
    code, subcode = error.get("code"), error.get("error_subcode")
    message = str(error.get("message") or "Meta refused the request")[:300]
    if code == 100 and subcode in CODE_SUBCODES:
        return ConnectError(
            f"Meta refused the authorization code ({CODE_SUBCODES[subcode]}: {message}); connect again",
            code="invalid_code",
        )
    if code == 1 and "client secret" in message.lower():
        return ConnectError(
            "Meta refused the app's credentials: check METRICX_META_APP_ID and METRICX_META_APP_SECRET",
            code="not_configured",
            status=502,
        )
    return ConnectError(f"Meta refused the connection: {message}", code="provider_refused", status=502)
