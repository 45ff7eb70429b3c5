"""The async engine and session factory, created once per process from ``DATABASE_URL``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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


def database_url() -> str:
    url = get_settings().database_url
    if not url:
        raise ConfigError("DATABASE_URL is not set; point it at PostgreSQL (or run `metricx demo`)")
    return url


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An asyncpg engine for a ``postgresql://`` URL. Statement parameters stay out of error
    messages (they hold customers' data, and errors reach logs)."""
    return create_async_engine(async_url(url), pool_pre_ping=True, pool_size=pool_size, hide_parameters=True)


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
