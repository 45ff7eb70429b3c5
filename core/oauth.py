"""What a provider implements to be connected through OAuth: the connector protocol and its records.

The core runs the flow (``core/services/connect.py``): it signs a single-use ``state``, makes the
PKCE pair, checks the callback, stores the tokens encrypted and creates one connection per account
picked. A connector only speaks its platform: the authorization URL, the code exchange and the
account listing. A plugin registers one per provider with the ``register_connectors`` hook.

App credentials (client id and secret) are the connector's settings, never stored per tenant.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import httpx
from pydantic import SecretStr

from core.errors import MetricxError, TransientError
from core.providers import Credentials


class ConnectError(MetricxError):
    """The connect flow cannot go on; ``code`` is stable (shown to the user and in JSON errors).

    Codes: ``access_denied`` (the user declined), ``invalid_state`` (forged or unknown),
    ``state_used`` (replayed), ``state_expired``, ``invalid_code`` (expired or used code),
    ``insufficient_scope`` (consent without a needed permission), ``invalid_request``
    (a bad parameter, e.g. a shop domain), ``invalid_signature`` (a callback not from the platform),
    ``not_configured`` (the operator has not set the app's credentials).
    """

    kind = "connect"

    def __init__(self, message: str, *, code: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """What the authorization URL carries: the signed state, where to come back, the PKCE challenge.

    ``params`` holds the flow's own parameters the connector checked at start (Shopify's ``shop``).
    """

    state: str
    redirect_uri: str
    code_challenge: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DiscoveredAccount:
    """An account the credentials reach, as the platform lists it.

    ``config`` is stored on the connection created for it (Google's ``login_customer_id``);
    ``connectable`` False (with ``note``) for accounts that cannot be synced (a manager account).
    """

    external_account_id: str
    name: str | None
    currency: str | None
    timezone: str | None
    config: Mapping[str, Any] = field(default_factory=dict)
    connectable: bool = True
    note: str | None = None


@runtime_checkable
class OAuthConnector(Protocol):
    """A provider's side of the connect flow (see core/HOOKS.md, ``register_connectors``)."""

    provider: str
    #: Send a PKCE challenge (S256) and verifier: True where the platform supports it.
    uses_pkce: bool

    def start_params(self, params: Mapping[str, str]) -> dict[str, str]:
        """Check and normalise the flow's own start parameters (e.g. ``shop``); ConnectError if bad.

        Also raise ``ConnectError(code="not_configured")`` when the app credentials are missing.
        """
        ...

    def authorization_url(self, request: AuthorizationRequest) -> str:
        """The platform URL the user opens to log in and consent."""
        ...

    def check_callback(self, query: Mapping[str, str], params: Mapping[str, str]) -> None:
        """Verify the callback came from the platform (e.g. Shopify's HMAC); ConnectError if not."""
        ...

    async def exchange_code(
        self,
        http: httpx.AsyncClient,
        *,
        code: str,
        redirect_uri: str,
        code_verifier: str | None,
        params: Mapping[str, str],
    ) -> Credentials:
        """Exchange the code for tokens (long-lived where the platform has them), with the scopes granted.

        Raise ConnectError ``invalid_code`` / ``insufficient_scope``, TransientError when unreachable.
        """
        ...

    async def discover_accounts(
        self, http: httpx.AsyncClient, credentials: Credentials, params: Mapping[str, str]
    ) -> Sequence[DiscoveredAccount]:
        """Every account the credentials reach."""
        ...


def app_credentials(
    app: str, client_id: str | None, secret: SecretStr | None, settings: tuple[str, str]
) -> tuple[str, str]:
    """The app's client id and secret from the operator's settings; ConnectError ``not_configured``
    naming the two settings (``settings``) when either is missing. ``app`` names it ("the Meta app")."""
    if not client_id or secret is None or not secret.get_secret_value():
        raise ConnectError(
            f"{app} is not configured: set {settings[0]} and {settings[1]}",
            code="not_configured",
            status=422,
        )
    return client_id, secret.get_secret_value()


async def platform_request(
    http: httpx.AsyncClient, platform: str, method: str, url: str, **kwargs: Any
) -> httpx.Response:
    """One request of a connector to its platform (30 s): unreachable, or a 5xx answer, is a
    TransientError naming ``platform``; any other answer is the connector's to read."""
    try:
        response = await http.request(method, url, timeout=30.0, **kwargs)
    except httpx.TransportError as exc:
        raise TransientError(f"{platform} could not be reached ({type(exc).__name__})") from None
    if response.status_code >= 500:
        raise TransientError(f"{platform} answered {response.status_code}")
    return response


def pkce_pair() -> tuple[str, str]:
    """A PKCE code verifier and its S256 challenge (RFC 7636)."""
    verifier = secrets.token_urlsafe(64)[:96]
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def granted(credentials: Credentials, needed: Sequence[str]) -> None:
    """ConnectError ``insufficient_scope`` naming what is missing, unless every scope in ``needed``
    was granted."""
    missing = [s for s in needed if s not in credentials.scopes]
    if missing:
        raise ConnectError(
            f"the permission {', '.join(missing)} was not granted; connect again and allow it",
            code="insufficient_scope",
        )


@runtime_checkable
class NormalizesAccountIds(Protocol):
    """A provider that writes one account id in several ways (Meta ``act_1001`` = ``1001``)."""

    def normalize_account_id(self, raw: str) -> str:
        """The one stored form of an account id: connections are unique on it."""
        ...


def normalize_account_id(provider: object, raw: str) -> str:
    """``raw`` in the provider's stored form (stripped; the provider's own rule when it has one)."""
    value = raw.strip()
    if isinstance(provider, NormalizesAccountIds):
        return provider.normalize_account_id(value)
    return value
