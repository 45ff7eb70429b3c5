"""The infrastructure error table: what counts as PostgreSQL / Redis being down, and what does not."""

from __future__ import annotations

import asyncpg
import pytest
import redis.exceptions as redis_errors
import sqlalchemy.exc as sa_errors

from core.errors import TransientError
from core.infra import InfraUnavailable, infra_error


def _wrapped(orig: BaseException) -> sa_errors.DBAPIError:
    """How SQLAlchemy hands an asyncpg failure to the engine (``orig`` plus a ``__cause__``)."""
    try:
        raise sa_errors.OperationalError("SELECT 1", {"password": "s3cret-param"}, orig)
    except sa_errors.OperationalError as exc:
        return exc


@pytest.mark.parametrize(
    ("error", "service", "words"),
    [
        (
            asyncpg.TooManyConnectionsError("sorry, too many clients already"),
            "PostgreSQL",
            "too many clients",
        ),
        (asyncpg.CannotConnectNowError("the database system is starting up"), "PostgreSQL", "starting up"),
        (asyncpg.AdminShutdownError("terminating connection"), "PostgreSQL", "shut down"),
        (asyncpg.SerializationError("could not serialize access"), "PostgreSQL", "serialization"),
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), "PostgreSQL", "lost the connection"),
        (_wrapped(ConnectionRefusedError(111, "Connect call failed")), "PostgreSQL", "did not answer"),
        (redis_errors.ConnectionError("Error 111 connecting"), "Redis", "lost the connection"),
        (redis_errors.BusyLoadingError("Redis is loading"), "Redis", "loading"),
        (redis_errors.TimeoutError("Timeout reading"), "Redis", "in time"),
        (ConnectionResetError(104, "reset by peer"), "network", "refused or reset"),
    ],
)
def test_infrastructure_faults_are_transient(error: BaseException, service: str, words: str) -> None:
    fault = infra_error(error)
    assert isinstance(fault, InfraUnavailable) and isinstance(fault, TransientError)
    assert fault.service == service
    assert words in fault.message


def test_sqlstate_of_a_wrapped_error_is_read() -> None:
    class Adapted(Exception):
        sqlstate = "40001"

    fault = infra_error(sa_errors.DBAPIError("UPDATE x", None, Adapted("serialize")))
    assert fault is not None and "serialization" in fault.message and "40001" in fault.message


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad payload"),
        KeyError("spend"),
        sa_errors.IntegrityError("INSERT", None, Exception("duplicate key")),
        FileNotFoundError(2, "no such file"),
        redis_errors.ResponseError("WRONGTYPE"),
    ],
)
def test_defects_are_not_infrastructure(error: BaseException) -> None:
    assert infra_error(error) is None


def test_message_never_carries_the_exception_text() -> None:
    fault = infra_error(_wrapped(ConnectionRefusedError(111, "postgresql://u:s3cret@db/x")))
    assert fault is not None and "s3cret" not in fault.message


async def test_an_os_error_from_the_database_driver_is_infrastructure(tmp_path: object) -> None:
    # A PostgreSQL reached over a Unix socket that is down: the socket file is missing.
    try:
        await asyncpg.connect(f"postgresql://postgres@/postgres?host={tmp_path}")
    except OSError as exc:
        fault = infra_error(exc)
    assert fault is not None and fault.service == "PostgreSQL"
