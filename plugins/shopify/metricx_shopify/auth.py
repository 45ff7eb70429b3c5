"""Access tokens of a shop: permanent, expiring offline (rotating refresh token) or client credentials.

Three kinds of credentials (https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens):

- **permanent** (custom apps, apps created by the merchant): an access token without ``expires_at``;
  never refreshed, a 401 means reconnect;
- **expiring offline** (public apps; required for them from 2027-01-01): a 60-minute access token and
  a refresh token that Shopify *replaces on every use*. A refresh is ``POST https://{shop}/admin/oauth/
  access_token`` with ``grant_type=refresh_token``. Because the old refresh token dies with its use, a
  lost rotation logs the shop out: the refresh runs under a per-connection lock shared by every worker
  (``ProviderContext.cache.try_lock``), re-reads the stored credentials inside the lock (another worker
  may have rotated them already: then those are used, no second refresh), and stores the new pair
  (``ProviderContext.credentials.save``, encrypted, one statement) before the new token is used;
- **client credentials** (an app on the developer's own stores): an access token with ``expires_at``
  and no refresh token, minted again with ``grant_type=client_credentials`` (24 hours).

A token is refreshed when it expires within ``token_refresh_margin_s`` and when Shopify answers 401
(ProviderHTTP calls :meth:`ShopifyAuth.refresh` once). A refresh refused with ``invalid_grant`` (or a
missing refresh token, app credentials, or a refresh token past its expiry) is an AuthError: the
engine marks the connection ``reconnect_required``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy.dialects.postgresql import insert

from core import (
    AccountRef,
    AuthError,
    Credentials,
    MetricxError,
    ProviderAPI,
    ProviderContext,
    RetryPolicy,
    TransientError,
    plugin_session,
)
from metricx_shopify import tables
from metricx_shopify.settings import ShopifySettings

log = structlog.get_logger(__name__, component="SHOPIFY_AUTH")

TOKEN_HEADER = "X-Shopify-Access-Token"
RECONNECT = "Please reconnect the store."


def grant_of(credentials: Credentials) -> str:
    """``permanent``, ``refresh_token`` (expiring offline) or ``client_credentials``."""
    if credentials.refresh_token:
        return "refresh_token"
    return "permanent" if credentials.expires_at is None else "client_credentials"


class TokenEndpoint(ProviderAPI):
    """How ProviderHTTP reads ``/admin/oauth/access_token``: 400/401 with an OAuth error is final."""

    name = "Shopify OAuth"
    policy = RetryPolicy(transient_retries=1, backoff_s=0.5, throttle_retries=0, max_wait_s=0)

    def __init__(self, shop: str) -> None:
        self.shop = shop

    def classify(self, response: httpx.Response) -> MetricxError | None:
        if response.status_code == 200:
            return None
        if response.status_code >= 500 or response.status_code == 429:
            return TransientError(f"Shopify's token endpoint answered {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = {}
        error = str(body.get("error") or response.status_code) if isinstance(body, dict) else "refused"
        return AuthError(f"Shopify refused to refresh the token of {self.shop} ({error[:60]}). {RECONNECT}")


class ShopifyAuth:
    """The token header of one connection, refreshed (serialized across workers) when it expires.

    Implements :class:`core.RequestAuth`: ProviderHTTP asks :meth:`headers` before every call and
    calls :meth:`refresh` once after a 401.
    """

    def __init__(
        self,
        ctx: ProviderContext,
        account: AccountRef,
        credentials: Credentials,
        settings: ShopifySettings,
        shop: str,
    ) -> None:
        self._ctx = ctx
        self._account = account
        self.credentials = credentials
        self._settings = settings
        self._shop = shop
        self._api = TokenEndpoint(shop)
        root = (settings.base_url or f"https://{shop}").rstrip("/")
        self._endpoint = f"{root}/admin/oauth/access_token"
        #: Whether this object stored a new pair itself (validate_token then returns None).
        self.rotated = False

    def _expiring(self, credentials: Credentials) -> bool:
        if credentials.expires_at is None:
            return False
        margin = timedelta(seconds=self._settings.token_refresh_margin_s)
        return credentials.expires_at <= datetime.now(UTC) + margin

    async def headers(self) -> Mapping[str, str]:
        if self._expiring(self.credentials):
            await self._rotate(stale=self.credentials.access_token)
        if not self.credentials.access_token:
            raise AuthError(f"No Shopify access token configured. {RECONNECT}")
        return {TOKEN_HEADER: self.credentials.access_token}

    async def refresh(self) -> None:
        """Shopify refused the token (401): get a new one, or raise AuthError when none can be had."""
        if grant_of(self.credentials) == "permanent":
            raise AuthError(f"Shopify rejected the access token of {self._shop} (401). {RECONNECT}")
        await self._rotate(stale=self.credentials.access_token)

    async def rotate_now(self) -> Credentials:
        """Refresh now, whatever the expiry says (the token upkeep decided), unless another worker
        rotated meanwhile; the new pair is stored before it is used."""
        await self._rotate(stale=self.credentials.access_token)
        return self.credentials

    async def ensure_fresh(self) -> Credentials:
        """The current credentials, refreshed first when the access token is about to expire."""
        await self.headers()
        return self.credentials

    async def _rotate(self, stale: str | None) -> None:
        """Replace the token ``stale`` under the connection's lock; a newer stored one is reused."""
        cache, store = self._ctx.cache, self._ctx.credentials
        key = f"refresh:{self._account.connection_id}"
        deadline = time.monotonic() + self._settings.refresh_lock_wait_s
        lock = await cache.try_lock(key, ttl_s=max(30, int(self._settings.refresh_lock_wait_s)))
        while lock is None:
            if time.monotonic() > deadline:
                raise TransientError(f"another worker is still refreshing the token of {self._shop}")
            await asyncio.sleep(0.05)
            lock = await cache.try_lock(key, ttl_s=max(30, int(self._settings.refresh_lock_wait_s)))
        try:
            current = await store.load() if store is not None else self.credentials
            if current.access_token and current.access_token != stale and not self._expiring(current):
                log.info("token_rotated_elsewhere", shop=self._shop)
                self.credentials = current  # another worker rotated while we waited: use its pair
                return
            fresh, refresh_expires_at = await self._grant(current)
            if store is not None:
                await store.save(fresh)  # stored before its first use: a crash now loses nothing
                await _record_rotation(self._account, grant_of(current), refresh_expires_at)
            self.credentials = fresh
            self.rotated = True
            log.info("token_rotated", shop=self._shop, grant=grant_of(current))
        finally:
            await cache.release(lock)

    async def _grant(self, current: Credentials) -> tuple[Credentials, datetime | None]:
        """A new token from the token endpoint, and when its refresh token expires."""
        settings, grant = self._settings, grant_of(current)
        if grant == "permanent":
            raise AuthError(f"Shopify rejected the access token of {self._shop}. {RECONNECT}")
        if not settings.client_id or settings.client_secret is None:
            raise AuthError(
                f"The token of {self._shop} expires and no app credentials are configured "
                f"(METRICX_SHOPIFY_CLIENT_ID / _CLIENT_SECRET). {RECONNECT}"
            )
        form: dict[str, Any] = {
            "client_id": settings.client_id,
            "client_secret": settings.client_secret.get_secret_value(),
            "grant_type": grant,
        }
        if grant == "refresh_token":
            form["refresh_token"] = current.refresh_token
        response = await self._ctx.http.post(
            self._api,
            self._endpoint,
            data=form,
            # names the shop when a base-URL override (the simulator) hides it from the host
            headers={"Accept": "application/json", "X-Shopify-Shop-Domain": self._shop},
            timeout_s=15.0,
        )
        body = response.json()
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthError(f"Shopify's token endpoint answered without an access token. {RECONNECT}")
        now = datetime.now(UTC)
        expires_in = body.get("expires_in")
        refresh_in = body.get("refresh_token_expires_in")
        refresh = body.get("refresh_token")
        if grant == "refresh_token" and not refresh:
            raise AuthError(f"Shopify's refresh answered without a new refresh token. {RECONNECT}")
        fresh = Credentials(
            access_token=token,
            refresh_token=refresh if isinstance(refresh, str) else None,
            expires_at=now + timedelta(seconds=expires_in) if isinstance(expires_in, int) else None,
            scopes=tuple(str(body.get("scope") or "").replace(",", " ").split()) or current.scopes,
        )
        return fresh, (now + timedelta(seconds=refresh_in) if isinstance(refresh_in, int) else None)


async def _record_rotation(account: AccountRef, grant: str, refresh_expires_at: datetime | None) -> None:
    """Count the rotation and keep the refresh token's expiry (the credentials row has no column)."""
    t = tables.tokens
    values = {
        "connection_id": uuid.UUID(account.connection_id),
        "workspace_id": uuid.UUID(account.workspace_id),
        "grant": grant,
        "refresh_expires_at": refresh_expires_at,
        "rotations": 1,
        "rotated_at": datetime.now(UTC),
    }
    stmt = insert(t).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.c.connection_id],
        set_={
            "grant": grant,
            "refresh_expires_at": refresh_expires_at,
            "rotations": t.c.rotations + 1,
            "rotated_at": values["rotated_at"],
        },
    )
    async with plugin_session() as session:
        await session.execute(stmt)
