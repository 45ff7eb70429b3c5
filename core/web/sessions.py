"""Dashboard sign-in: a workspace API key exchanged for a server-side session in Redis.

The browser holds only a random session id (HttpOnly cookie); Redis holds the
workspace, the API key's id and the session's CSRF token under the id's hash.
Every request re-checks that the key is not revoked, so revoking a key signs
its sessions out. Before sign-in a double-submit cookie protects the login form.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from core.db.models import ApiKey
from core.keys import web_session
from core.services import hash_key

SESSION_COOKIE = "metricx_session"
LOGIN_CSRF_COOKIE = "metricx_login_csrf"
SESSION_TTL_S = 12 * 3600


@dataclass(frozen=True, slots=True)
class WebSession:
    """A signed-in browser: its workspace, the key it signed in with, and its CSRF token."""

    workspace_id: uuid.UUID
    key_id: uuid.UUID
    csrf: str


def _hashed(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    """Set a cookie HttpOnly, SameSite=Lax, and Secure when the page was served over HTTPS."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


async def key_for(session: AsyncSession, plain_key: str) -> ApiKey | None:
    """The unrevoked workspace API key ``plain_key`` names, if any."""
    key: ApiKey | None = await session.scalar(
        select(ApiKey).where(ApiKey.key_hash == hash_key(plain_key), ApiKey.revoked_at.is_(None))
    )
    return key


async def start_session(redis: Redis, key: ApiKey) -> str:
    """Store a new session for ``key``; returns the cookie value (shown to nobody else)."""
    token = secrets.token_urlsafe(32)
    payload = {"workspace_id": str(key.workspace_id), "key_id": str(key.id), "csrf": new_csrf()}
    await redis.set(web_session(_hashed(token)), json.dumps(payload), ex=SESSION_TTL_S)
    return token


async def end_session(redis: Redis, token: str | None) -> None:
    """Forget the session (sign out)."""
    if token:
        await redis.delete(web_session(_hashed(token)))


async def load_session(redis: Redis, session: AsyncSession, token: str | None) -> WebSession | None:
    """The session of the cookie value, if it exists and its key is still valid."""
    if not token:
        return None
    raw = await redis.get(web_session(_hashed(token)))
    if raw is None:
        return None
    data = json.loads(raw)
    key_id = uuid.UUID(data["key_id"])
    valid = await session.scalar(select(ApiKey.id).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)))
    if valid is None:
        await end_session(redis, token)
        return None
    return WebSession(uuid.UUID(data["workspace_id"]), key_id, str(data["csrf"]))


def csrf_matches(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison of a form's CSRF token with the expected one."""
    return bool(expected and given) and secrets.compare_digest(str(expected), str(given))


def new_csrf() -> str:
    """A fresh CSRF token."""
    return secrets.token_urlsafe(24)
