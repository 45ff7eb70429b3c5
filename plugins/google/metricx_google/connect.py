"""Connecting Google Ads accounts through Google's OAuth 2.0 web-server flow (with PKCE).

``{auth_url}?access_type=offline&prompt=consent&code_challenge=..`` -> ``code`` -> ``token_url``
(``grant_type=authorization_code``: an access token, a refresh token and the scopes granted; the
``adwords`` scope must be among them) -> ``customers:listAccessibleCustomers`` -> for each customer,
``customer_client`` (itself and, for a manager, every account of its hierarchy, clients of
sub-managers included, reached with ``login-customer-id`` = the accessible manager at the top, which
the connection keeps in its config; Google accepts any manager above an account there). Shapes:
fixtures/oauth_*.json.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import structlog

from core import (
    AuthorizationRequest,
    ConnectError,
    Credentials,
    DiscoveredAccount,
    app_credentials,
    granted,
    platform_request,
)
from metricx_google.reports import HIERARCHY_QUERY
from metricx_google.settings import GoogleSettings

log = structlog.get_logger(__name__, component="GOOGLE_CONNECT")

ADWORDS_SCOPE = "https://www.googleapis.com/auth/adwords"


class GoogleConnector:
    """The Google Ads side of the core's connect flow."""

    provider = "google"
    uses_pkce = True

    def __init__(self, settings: GoogleSettings | None = None) -> None:
        self._settings = settings

    @property
    def settings(self) -> GoogleSettings:
        return self._settings or GoogleSettings()

    def _client(self) -> tuple[str, str]:
        s = self.settings
        return app_credentials(
            "the Google OAuth client",
            s.client_id,
            s.client_secret,
            ("METRICX_GOOGLE_CLIENT_ID", "METRICX_GOOGLE_CLIENT_SECRET"),
        )

    def start_params(self, params: Mapping[str, str]) -> dict[str, str]:
        self._client()
        return {}

    def authorization_url(self, request: AuthorizationRequest) -> str:
        client_id, _ = self._client()
        query = {
            "client_id": client_id,
            "redirect_uri": request.redirect_uri,
            "response_type": "code",
            "scope": ADWORDS_SCOPE,
            "state": request.state,
            "access_type": "offline",  # a refresh token
            "prompt": "consent",  # ... every time, also for a user who consented before
            "include_granted_scopes": "true",
            "code_challenge": request.code_challenge or "",
            "code_challenge_method": "S256",
        }
        return f"{self.settings.auth_url}?{urlencode(query)}"

    def check_callback(self, query: Mapping[str, str], params: Mapping[str, str]) -> None:
        return None  # the state is the proof; PKCE binds the code to this flow

    async def exchange_code(
        self,
        http: httpx.AsyncClient,
        *,
        code: str,
        redirect_uri: str,
        code_verifier: str | None,
        params: Mapping[str, str],
    ) -> Credentials:
        client_id, secret = self._client()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": client_id,
            "client_secret": secret,
            "code_verifier": code_verifier or "",
        }
        response = await platform_request(http, "Google", "POST", self.settings.token_url, data=form)
        body = response.json() if response.content else {}
        if response.status_code >= 400:
            raise _token_error(body)
        credentials = Credentials(
            access_token=body.get("access_token"),
            refresh_token=body.get("refresh_token"),
            expires_at=datetime.now(UTC) + timedelta(seconds=int(body.get("expires_in") or 0)),
            scopes=tuple(str(body.get("scope") or "").split()),
        )
        granted(credentials, (ADWORDS_SCOPE,))
        if not credentials.refresh_token:
            raise ConnectError(
                "Google sent no refresh token (the consent was not for offline access); connect again",
                code="invalid_code",
            )
        return credentials

    def _headers(self, credentials: Credentials, login: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {credentials.access_token}"}
        if self.settings.developer_token is not None:
            headers["developer-token"] = self.settings.developer_token.get_secret_value()
        if login:
            headers["login-customer-id"] = login
        return headers

    async def discover_accounts(
        self, http: httpx.AsyncClient, credentials: Credentials, params: Mapping[str, str]
    ) -> Sequence[DiscoveredAccount]:
        root = f"{self.settings.base_url.rstrip('/')}/{self.settings.api_version}"
        listed = await platform_request(
            http,
            "Google",
            "GET",
            f"{root}/customers:listAccessibleCustomers",
            headers=self._headers(credentials),
        )
        if listed.status_code >= 400:
            raise ConnectError(
                f"Google Ads refused to list the accounts ({listed.status_code})",
                code="provider_refused",
                status=502,
            )
        found: dict[str, DiscoveredAccount] = {}
        for name in listed.json().get("resourceNames", []):
            customer = str(name).removeprefix("customers/")
            response = await platform_request(
                http,
                "Google",
                "POST",
                f"{root}/customers/{customer}/googleAds:searchStream",
                json={"query": HIERARCHY_QUERY},
                headers=self._headers(credentials, customer),
            )
            if response.status_code >= 400:  # e.g. a cancelled account the user can still see
                log.info("google_discovery_skipped", customer_id=customer, status=response.status_code)
                continue
            for batch in response.json():
                for row in batch.get("results", []):
                    account = _account(row.get("customerClient") or {}, customer)
                    if account is not None and (
                        account.external_account_id not in found or account.connectable
                    ):
                        found[account.external_account_id] = account
        return list(found.values())


def _account(cc: Mapping[str, Any], reached_through: str) -> DiscoveredAccount | None:
    customer = str(cc.get("id") or "")
    if not customer:
        return None
    manager, status = cc.get("manager") is True, cc.get("status")
    own = customer == reached_through
    note = None
    if manager:
        note = "manager account: pick its client accounts"
    elif cc.get("hidden") is True or status not in (None, "ENABLED"):
        note = f"not syncable ({'hidden' if cc.get('hidden') else str(status).lower()})"
    return DiscoveredAccount(
        external_account_id=customer,
        name=cc.get("descriptiveName"),
        currency=cc.get("currencyCode"),
        timezone=cc.get("timeZone"),
        config={} if own else {"login_customer_id": reached_through},
        connectable=note is None,
        note=note,
    )


def _token_error(body: Mapping[str, Any]) -> ConnectError:
    error, description = str(body.get("error") or ""), str(body.get("error_description") or "")[:200]
    if error in ("invalid_grant", "redirect_uri_mismatch"):
        return ConnectError(
            f"Google refused the authorization code ({error}: {description}); connect again",
            code="invalid_code",
        )
    if error in ("invalid_client", "unauthorized_client"):
        return ConnectError(
            "Google refused the OAuth client: check METRICX_GOOGLE_CLIENT_ID and "
            "METRICX_GOOGLE_CLIENT_SECRET",
            code="not_configured",
            status=502,
        )
    return ConnectError(
        f"Google refused the connection ({error or 'error'})", code="provider_refused", status=502
    )
