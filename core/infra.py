"""Infrastructure faults (PostgreSQL, Redis, the network under them) mapped to the core error tree.

One table, like :data:`core.http.TRANSPORT_ERRORS`: every row is (exception type, what happened).
A sync whose database or Redis call fails with one of them has not failed: the try is retried
with backoff (:class:`InfraUnavailable`, a :class:`~core.errors.TransientError`).

PostgreSQL errors reach us wrapped (SQLAlchemy's ``DBAPIError`` around asyncpg's adapter around
asyncpg's own error), so :func:`infra_error` walks ``orig`` / ``__cause__`` / ``__context__`` and
also reads the SQLSTATE (``INFRA_SQLSTATES``): connection exceptions, serialization failures,
deadlocks, ``too many clients``, shutdowns and "the database system is starting up".

:class:`ReconnectForever` is a redis-py ``Retry`` for long-lived processes: a command whose
connection fails waits (capped exponential backoff) and runs again when Redis is back, so arq's
poll loop never sees the outage and the worker does not exit.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import asyncpg
import redis.exceptions as redis_errors
import sqlalchemy.exc as sa_errors
import structlog
from redis.asyncio.retry import Retry as RedisRetry
from redis.backoff import ExponentialBackoff

from core.errors import TransientError

log = structlog.get_logger(__name__)

T = TypeVar("T")


class InfraUnavailable(TransientError):
    """PostgreSQL or Redis did not answer (down, restarting, overloaded): retried with backoff."""

    kind = "infrastructure"

    def __init__(self, message: str, *, service: str) -> None:
        super().__init__(message)
        self.service = service


#: The one mapping of infrastructure exceptions: (exception type, service, what happened).
#: The first row that matches wins, so subclasses come before their bases.
INFRA_ERRORS: tuple[tuple[type[BaseException], str, str], ...] = (
    (asyncpg.TooManyConnectionsError, "PostgreSQL", "has too many clients"),
    (asyncpg.CannotConnectNowError, "PostgreSQL", "is starting up or shutting down"),
    (asyncpg.AdminShutdownError, "PostgreSQL", "was shut down"),
    (asyncpg.CrashShutdownError, "PostgreSQL", "crashed"),
    (asyncpg.SerializationError, "PostgreSQL", "aborted a transaction (serialization failure)"),
    (asyncpg.DeadlockDetectedError, "PostgreSQL", "aborted a transaction (deadlock)"),
    (asyncpg.PostgresConnectionError, "PostgreSQL", "lost the connection"),
    (asyncpg.InterfaceError, "PostgreSQL", "connection is closed"),
    (sa_errors.DisconnectionError, "PostgreSQL", "lost the connection"),
    (sa_errors.TimeoutError, "PostgreSQL", "connection pool timed out"),
    (sa_errors.OperationalError, "PostgreSQL", "did not answer"),
    (sa_errors.InterfaceError, "PostgreSQL", "connection is closed"),
    (redis_errors.BusyLoadingError, "Redis", "is loading its data"),
    (redis_errors.ReadOnlyError, "Redis", "is a read-only replica (failover)"),
    (redis_errors.TryAgainError, "Redis", "asked to try again"),
    (redis_errors.ConnectionError, "Redis", "lost the connection"),
    (redis_errors.TimeoutError, "Redis", "did not answer in time"),
    (ConnectionError, "network", "connection refused or reset"),
    (TimeoutError, "network", "timed out"),
    (socket.gaierror, "network", "name did not resolve"),
)

#: SQLSTATE codes (or classes, two characters) that mean "try again": checked on wrapped errors.
INFRA_SQLSTATES: dict[str, str] = {
    "08": "lost the connection",
    "40001": "aborted a transaction (serialization failure)",
    "40P01": "aborted a transaction (deadlock)",
    "53300": "has too many clients",
    "57P01": "was shut down",
    "57P02": "crashed",
    "57P03": "is starting up or shutting down",
}

#: Redis errors a client reconnects on (``retry_on_error``): the Redis rows of the table.
REDIS_RETRY_ERRORS: tuple[type[Exception], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
    redis_errors.ReadOnlyError,
    redis_errors.TryAgainError,
    ConnectionError,
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [getattr(current, "orig", None), current.__cause__, current.__context__]


def _sqlstate(exc: BaseException) -> str | None:
    code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    return code if isinstance(code, str) else None


def infra_error(exc: BaseException) -> InfraUnavailable | None:
    """The :class:`InfraUnavailable` for an infrastructure fault anywhere in ``exc``'s chain, else None.

    The message names the service and what happened, never the exception's text (a database URL
    or a query's parameters may be in it).
    """
    for link in _chain(exc):
        code = _sqlstate(link)
        if code is not None:
            what = INFRA_SQLSTATES.get(code) or INFRA_SQLSTATES.get(code[:2])
            if what:
                return InfraUnavailable(f"PostgreSQL {what} ({code})", service="PostgreSQL")
        for error_type, service, what in INFRA_ERRORS:
            if isinstance(link, error_type):
                return InfraUnavailable(f"{service} {what} ({type(link).__name__})", service=service)
        client = _raised_in_client(link) if isinstance(link, OSError) else None
        if client is not None:
            # e.g. FileNotFoundError: a Unix-socket server that is down has no socket file.
            return InfraUnavailable(f"{client} unreachable ({type(link).__name__})", service=client)
    return None


#: Where an otherwise generic ``OSError`` comes from when it is a server being unreachable.
CLIENT_MODULES: tuple[tuple[str, str], ...] = (
    ("asyncpg", "PostgreSQL"),
    ("sqlalchemy", "PostgreSQL"),
    ("redis", "Redis"),
)


def _raised_in_client(exc: BaseException) -> str | None:
    tb = exc.__traceback__
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        for prefix, service in CLIENT_MODULES:
            if module == prefix or module.startswith(prefix + "."):
                return service
        tb = tb.tb_next
    return None


class ReconnectForever(RedisRetry):
    """A redis-py ``Retry`` that waits for Redis as long as it takes (capped backoff), logging the
    outage once when it starts and once when Redis answers again."""

    def __init__(self, cap_s: float = 2.0, base_s: float = 0.05) -> None:
        super().__init__(ExponentialBackoff(cap=cap_s, base=base_s), -1, REDIS_RETRY_ERRORS)  # type: ignore[arg-type]

    async def call_with_retry(
        self, do: Callable[[], Awaitable[T]], fail: Callable[[redis_errors.RedisError], Any]
    ) -> T:
        """Run ``do`` until it succeeds; connection errors wait and try again, others are raised."""
        failures = 0
        started = 0.0
        while True:
            try:
                result = await do()
            except self._supported_errors as error:
                failures += 1
                if failures == 1:
                    started = time.monotonic()
                    log.warning("redis_unavailable", error_type=type(error).__name__)
                await fail(error)
                await _sleep(self._backoff.compute(failures))
                continue
            if failures:
                log.info("redis_reconnected", down_s=round(time.monotonic() - started, 1), tries=failures)
            return result


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(max(0.01, seconds))


__all__ = [
    "CLIENT_MODULES",
    "INFRA_ERRORS",
    "INFRA_SQLSTATES",
    "REDIS_RETRY_ERRORS",
    "InfraUnavailable",
    "ReconnectForever",
    "infra_error",
]
