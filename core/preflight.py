"""Operator mistakes as one line: what a process checks before it starts, and how a failure is told.

Every line names the setting or server and what to do (``DATABASE_URL``, ``REDIS_URL``,
``METRICX_ENCRYPTION_KEYS``), never the URL's password or a traceback. The CLI maps any
failure through :func:`describe`; the API, worker and scheduler call :func:`require_encryption_keys`
(and the long-running commands :func:`check_servers`) before they start.
"""

from __future__ import annotations

from urllib.parse import urlparse

from cryptography.fernet import InvalidToken

from core.config import Settings, get_settings
from core.errors import ConfigError, MetricxError
from core.infra import _chain, _raised_in_client, _sqlstate, infra_error

#: SQLSTATEs an operator causes, with what to do (``{db}``, ``{user}`` filled from DATABASE_URL).
OPERATOR_SQLSTATES = {
    "3D000": "PostgreSQL has no database {db!r} (DATABASE_URL): create it or fix DATABASE_URL, "
    "then run `metricx db upgrade`",
    "28P01": "PostgreSQL refused the password of user {user!r} (DATABASE_URL): fix the user or password",
    "28000": "PostgreSQL refused user {user!r} (DATABASE_URL): check the user and pg_hba.conf",
    "42P01": "database {db!r} has no metricx tables (DATABASE_URL): run `metricx db upgrade`",
    "42501": "user {user!r} lacks a permission in database {db!r} (DATABASE_URL): grant it or use the owner",
}
SETTINGS = {"PostgreSQL": "DATABASE_URL", "Redis": "REDIS_URL"}


def require_encryption_keys(settings: Settings | None = None) -> None:
    """Refuse to start without ``METRICX_ENCRYPTION_KEYS`` (a generated key would encrypt tokens that
    no other process can read); :class:`ConfigError` also when a key is malformed."""
    from core.crypto import get_cipher

    settings = settings or get_settings()
    if settings.encryption_keys is None or not settings.encryption_keys.get_secret_value().strip():
        raise ConfigError(
            "METRICX_ENCRYPTION_KEYS is not set: generate a key with `metricx keys generate` and give "
            "the same value to the API, worker, scheduler and CLI (`metricx demo` makes its own)"
        )
    get_cipher(settings)


def _where(url: str | None, default: str) -> tuple[str, str, str]:
    parsed = urlparse(url or default)
    host = parsed.hostname or "localhost"
    where = f"{host}:{parsed.port}" if parsed.port else host
    return where, (parsed.path or "/").strip("/").split("/")[0], parsed.username or ""


def describe(exc: BaseException, settings: Settings | None = None) -> str | None:
    """One line for a failure an operator can fix (server down, wrong database, wrong key), else None."""
    settings = settings or get_settings()
    pg_where, db, user = _where(settings.database_url, "postgresql://localhost:5432/")
    redis_where, _, _ = _where(settings.redis_url, "redis://localhost:6379/0")
    for link in _chain(exc):
        if isinstance(link, MetricxError):
            return link.message
        if isinstance(link, InvalidToken):
            return (
                "a stored credential cannot be decrypted with METRICX_ENCRYPTION_KEYS: put the key it was "
                "encrypted with back in the list (after the new one), then run `metricx keys rotate`"
            )
        code = _sqlstate(link)
        if code in OPERATOR_SQLSTATES:
            return OPERATOR_SQLSTATES[code].format(db=db, user=user) + f" [{pg_where}]"
    infra = infra_error(exc)
    service = infra.service if infra is not None else None
    if service == "network":
        # A bare OSError (connection refused): which client raised it tells the server.
        service = next(
            (s for link in _chain(exc) if isinstance(link, OSError) and (s := _raised_in_client(link))),
            None,
        )
    if service in SETTINGS:
        where = pg_where if service == "PostgreSQL" else redis_where
        detail = infra.message if infra is not None and infra.service == service else type(exc).__name__
        setting = SETTINGS[service]
        return f"cannot reach {service} at {where} ({setting}): {detail}; start it or fix {setting}"
    if isinstance(exc, OSError):
        return (
            f"cannot reach a server: {exc.strerror or type(exc).__name__}; check DATABASE_URL and REDIS_URL"
        )
    return None


async def check_redis(settings: Settings | None = None) -> None:
    """A connection to ``REDIS_URL`` (``redis_conn_retries`` tries, as a starting process waits for a
    Redis starting beside it); :class:`ConfigError` naming it on failure."""
    from core.redis import create_arq_pool

    settings = settings or get_settings()
    try:
        pool = await create_arq_pool(settings)
        try:
            await pool.ping()
        finally:
            await pool.aclose()
    except MetricxError:
        raise
    except Exception as exc:
        raise ConfigError(
            describe(exc, settings) or f"cannot reach Redis (REDIS_URL): {type(exc).__name__}"
        ) from None


async def check_database(settings: Settings | None = None) -> None:
    """``SELECT 1`` on ``DATABASE_URL``; :class:`ConfigError` naming it on failure."""
    from sqlalchemy import text

    from core.db.engine import session_scope

    try:
        async with session_scope() as session:
            await session.execute(text("SELECT 1 FROM connections LIMIT 1"))
    except MetricxError:
        raise
    except Exception as exc:
        message = describe(exc, settings) or f"PostgreSQL (DATABASE_URL) failed: {type(exc).__name__}"
        raise ConfigError(message) from None


async def check_servers(settings: Settings | None = None) -> None:
    """Before a long-running process starts: its key, its database and its Redis answer.

    The check's database pool is closed again: the process serves on an event loop of its own.
    """
    from core.db.engine import dispose_engine

    require_encryption_keys(settings)
    try:
        await check_database(settings)
    finally:
        await dispose_engine()
    await check_redis(settings)
