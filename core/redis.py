"""Redis connection settings from ``REDIS_URL`` (redis://, rediss://, Sentinel) and the job serializer.

Jobs are serialized with msgpack, never pickle: a Redis that can be written to
must not mean code execution in the workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

import arq.connections
import msgpack
from arq.connections import ArqRedis, RedisSettings, create_pool
from redis.asyncio.sentinel import Sentinel

from core.config import Settings, get_settings
from core.errors import ConfigError


def serialize(obj: dict[str, Any]) -> bytes:
    """arq job/result serializer (msgpack). Non-msgpack values become their string form."""
    return msgpack.packb(obj, default=str, datetime=False)


def deserialize(data: bytes) -> dict[str, Any]:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class SentinelTLS:
    """TLS for ``rediss+sentinel://``, carried in ``RedisSettings.ssl`` (truthy) to :class:`TlsSentinel`."""

    cert_reqs: str
    ca_certs: str | None

    def __bool__(self) -> bool:
        return True

    def connection_kwargs(self) -> dict[str, Any]:
        return {
            "ssl": True,
            "ssl_cert_reqs": self.cert_reqs,
            "ssl_ca_certs": self.ca_certs,
            "ssl_check_hostname": self.cert_reqs == "required",
        }


class TlsSentinel(Sentinel):
    """arq's Sentinel client with full TLS: the master's certificate is checked against
    ``METRICX_REDIS_SSL_CA_CERTS`` including its host name, and the Sentinels are spoken to over
    TLS with the same checks. (arq passes only ``ssl=True``: no CA, no host name check, and
    plaintext to the Sentinels.)"""

    def __init__(self, sentinels: Any, ssl: Any = False, **kwargs: Any) -> None:
        options: dict[str, Any] = dict(kwargs)
        if isinstance(ssl, SentinelTLS):
            tls = ssl.connection_kwargs()
            sockets = {k: v for k, v in kwargs.items() if k.startswith("socket_")}
            options.update(tls, sentinel_kwargs={**sockets, **tls})
        else:
            options["ssl"] = ssl
        super().__init__(sentinels, **options)  # type: ignore[no-untyped-call]


# arq builds its Sentinel client by this module-level name, for the API's pool and the worker's alike.
arq.connections.Sentinel = TlsSentinel  # type: ignore[attr-defined,assignment]


def _database(path: str) -> int:
    part = path.strip("/")
    if not part:
        return 0
    try:
        return int(part)
    except ValueError:
        raise ConfigError(f"REDIS_URL database must be a number, got {part!r}") from None


def redis_settings(settings: Settings | None = None, *, reconnect_forever: bool = False) -> RedisSettings:
    """arq ``RedisSettings`` for ``REDIS_URL``; TLS verifies certificates unless told otherwise.

    ``reconnect_forever`` (long-lived processes: the worker) makes every command wait for Redis
    through an outage or restart (:class:`core.infra.ReconnectForever`) instead of raising.
    """
    settings = settings or get_settings()
    if settings.redis_ssl_cert_reqs not in {"required", "optional", "none"}:
        raise ConfigError("METRICX_REDIS_SSL_CERT_REQS must be required, optional or none")
    rs = _redis_settings(settings)
    if reconnect_forever:
        from core.infra import REDIS_RETRY_ERRORS, ReconnectForever

        rs.retry = ReconnectForever()
        rs.retry_on_error = list(REDIS_RETRY_ERRORS)
    return rs


def _redis_settings(settings: Settings) -> RedisSettings:
    url = settings.redis_url or "redis://localhost:6379/0"
    parsed = urlparse(url)
    common: dict[str, Any] = {
        "password": unquote(parsed.password) if parsed.password else None,
        "username": unquote(parsed.username) if parsed.username else None,
        "conn_timeout": settings.redis_conn_timeout_s,
        "conn_retries": settings.redis_conn_retries,
    }
    if parsed.scheme in {"redis+sentinel", "rediss+sentinel"}:
        hosts = []
        for part in parsed.netloc.rsplit("@", 1)[-1].split(","):
            host, _, port = part.partition(":")
            hosts.append((host, int(port or 26379)))
        pieces = [p for p in parsed.path.split("/") if p]
        if not pieces:
            raise ConfigError(
                "a Sentinel REDIS_URL needs the master name: redis+sentinel://host:26379/mymaster/0"
            )
        return RedisSettings(
            host=hosts,
            sentinel=True,
            sentinel_master=pieces[0],
            database=_database(pieces[1] if len(pieces) > 1 else ""),
            # Typed bool in arq; a truthy SentinelTLS reaches TlsSentinel with the checks to make.
            ssl=(
                SentinelTLS(settings.redis_ssl_cert_reqs, settings.redis_ssl_ca_certs)  # type: ignore[arg-type]
                if parsed.scheme.startswith("rediss")
                else False
            ),
            ssl_cert_reqs=settings.redis_ssl_cert_reqs,
            ssl_ca_certs=settings.redis_ssl_ca_certs,
            ssl_check_hostname=settings.redis_ssl_cert_reqs == "required",
            **common,
        )
    if parsed.scheme not in {"redis", "rediss", "unix"}:
        raise ConfigError(
            f"REDIS_URL must start with redis://, rediss:// or redis+sentinel://, got {parsed.scheme!r}"
        )
    if parsed.scheme == "unix":
        return RedisSettings(unix_socket_path=parsed.path, **common)
    tls = parsed.scheme == "rediss"
    return RedisSettings(
        host=parsed.hostname or "localhost",
        port=parsed.port or 6379,
        database=_database(parsed.path),
        ssl=tls,
        ssl_cert_reqs=settings.redis_ssl_cert_reqs if tls else "required",
        ssl_ca_certs=settings.redis_ssl_ca_certs,
        ssl_check_hostname=tls and settings.redis_ssl_cert_reqs == "required",
        **common,
    )


async def create_arq_pool(settings: Settings | None = None) -> ArqRedis:
    """A Redis pool that enqueues with the project's serializer on the configured queue."""
    settings = settings or get_settings()
    pool: ArqRedis = await create_pool(
        redis_settings(settings),
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=settings.queue_name,
    )
    return pool
