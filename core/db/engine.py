"""The async engine and session factory, created once per process from ``DATABASE_URL``.

``DATABASE_URL`` may carry libpq's TLS parameters (``?sslmode=verify-full&sslrootcert=ca.pem``,
``sslcert``/``sslkey`` for a client certificate), as hosted PostgreSQL documents them: they are
taken off the URL and become the asyncpg ``ssl`` argument (:func:`ssl_argument`).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from core.config import get_settings
from core.errors import ConfigError

_engine: AsyncEngine | None = None
_sessionmaker: async_sessionmaker[AsyncSession] | None = None


def async_url(url: str) -> str:
    """Turn a plain ``postgresql://`` URL into the asyncpg dialect's URL."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ConfigError(f"DATABASE_URL must be a postgresql:// URL, got scheme {url.split(':', 1)[0]!r}")


SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
TLS_PARAMS = ("sslmode", "sslrootcert", "sslcert", "sslkey")


def ssl_argument(params: dict[str, str]) -> ssl.SSLContext | str | bool | None:
    """asyncpg's ``ssl`` for libpq's sslmode/sslrootcert/sslcert/sslkey (None: asyncpg's default).

    ``require`` encrypts without checking the certificate (as libpq does without a root
    certificate); ``verify-ca`` checks it against ``sslrootcert`` (else the system CAs);
    ``verify-full`` also checks that it names the host.
    """
    mode = params.get("sslmode")
    if mode is None and not params.get("sslrootcert"):
        return None
    mode = mode or "verify-full"
    if mode not in SSLMODES:
        raise ConfigError(f"DATABASE_URL sslmode must be one of {', '.join(SSLMODES)}, got {mode!r}")
    if mode == "disable":
        return False
    if mode in ("allow", "prefer"):
        return mode
    try:
        context = ssl.create_default_context(cafile=params.get("sslrootcert") or None)
        if params.get("sslcert"):
            context.load_cert_chain(params["sslcert"], params.get("sslkey") or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"DATABASE_URL TLS files cannot be read: {exc}") from None
    if mode == "require":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif mode == "verify-ca":
        context.check_hostname = False
    return context


def engine_args(url: str) -> tuple[str, dict[str, Any]]:
    """The asyncpg dialect URL without libpq's TLS parameters, and the ``connect_args`` they become."""
    parts = urlsplit(async_url(url))
    query = parse_qsl(parts.query, keep_blank_values=True)
    tls = {k: v for k, v in query if k in TLS_PARAMS}
    rest = [(k, v) for k, v in query if k not in TLS_PARAMS]
    argument = ssl_argument(tls)
    connect_args: dict[str, Any] = {} if argument is None else {"ssl": argument}
    return urlunsplit(parts._replace(query=urlencode(rest))), connect_args


def database_url() -> str:
    url = get_settings().database_url
    if not url:
        raise ConfigError("DATABASE_URL is not set; point it at PostgreSQL (or run `metricx demo`)")
    return url


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An asyncpg engine for a ``postgresql://`` URL (TLS parameters mapped). Statement parameters
    stay out of error messages (they hold customers' data, and errors reach logs)."""
    sa_url, connect_args = engine_args(url)
    # No pre-ping (a BEGIN/SELECT/ROLLBACK before every checkout): a connection that died is found
    # on error instead, where SQLAlchemy invalidates the pool's older connections, and the sync's
    # try is retried (core.infra).
    options: dict[str, Any] = {"hide_parameters": True, **kwargs}
    if options.get("poolclass") is None:
        options.setdefault("pool_size", 10)
    return create_async_engine(sa_url, connect_args=connect_args, **options)


def get_engine() -> AsyncEngine:
    global _engine, _sessionmaker
    if _engine is None:
        _engine = create_engine(database_url())
        _sessionmaker = async_sessionmaker(_engine, expire_on_commit=False)
    return _engine


def get_sessionmaker() -> async_sessionmaker[AsyncSession]:
    get_engine()
    assert _sessionmaker is not None
    return _sessionmaker


@asynccontextmanager
async def session_scope() -> AsyncIterator[AsyncSession]:
    """One short transaction: committed on success, rolled back on error."""
    async with get_sessionmaker()() as session, session.begin():
        yield session


async def dispose_engine() -> None:
    global _engine, _sessionmaker
    if _engine is not None:
        await _engine.dispose()
    _engine = None
    _sessionmaker = None
