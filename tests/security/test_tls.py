"""Transport security (issue 19 item 5) against servers the test starts, with a CA it generates:
libpq's sslmode/sslrootcert in DATABASE_URL, rediss:// and rediss+sentinel:// verified fully."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio.sentinel import MasterNotFoundError
from sqlalchemy import text

from core.config import Settings
from tests.security.tls_servers import Pki, make_pki, pg_bin, tls_postgres, tls_redis, tls_sentinel

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def pg_port(pki: Pki) -> Iterator[int]:
    if pg_bin() is None:
        pytest.skip("no PostgreSQL server binaries (initdb) under /usr/lib/postgresql")
    with tls_postgres(pki) as port:
        yield port


async def _server_sees_tls(url: str) -> bool:
    from core.db.engine import create_engine

    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            row = await conn.execute(text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))
            return bool(row.scalar())
    finally:
        await engine.dispose()


async def test_sslmode_require_and_verify_full_reach_a_tls_only_postgresql(pki: Pki, pg_port: int) -> None:
    base = f"postgresql://postgres@localhost:{pg_port}/postgres"
    assert await _server_sees_tls(f"{base}?sslmode=require")
    assert await _server_sees_tls(f"{base}?sslmode=verify-full&sslrootcert={pki.ca}")
    ip = f"postgresql://postgres@127.0.0.1:{pg_port}/postgres"
    assert await _server_sees_tls(f"{ip}?sslmode=verify-ca&sslrootcert={pki.ca}")  # CA checked, not the name


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (
            "postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=verify-full&sslrootcert={ca}",
            "IP address mismatch",
        ),
        (
            "postgresql://postgres@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={other}",
            "local issuer",
        ),
        ("postgresql://postgres@localhost:{port}/postgres?sslmode=disable", "pg_hba.conf rejects"),
    ],
)
async def test_verification_failures_are_refused(pki: Pki, pg_port: int, url: str, why: str) -> None:
    with pytest.raises(Exception, match=why):
        await _server_sees_tls(url.format(port=pg_port, ca=pki.ca, other=pki.other_ca))


def test_db_upgrade_runs_over_verify_full(pki: Pki, pg_port: int) -> None:
    from core.db.migrate import upgrade

    upgrade(f"postgresql://postgres@localhost:{pg_port}/postgres?sslmode=verify-full&sslrootcert={pki.ca}")


def test_a_bad_sslmode_is_a_config_error() -> None:
    from core.db.engine import engine_args
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="sslmode must be one of"):
        engine_args("postgresql://u@h/db?sslmode=verify_full")
    url, args = engine_args("postgresql://u@h/db?sslmode=prefer&application_name=x")
    assert url == "postgresql+asyncpg://u@h/db?application_name=x" and args == {"ssl": "prefer"}


@pytest.fixture(scope="module")
def redis_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server binary")
    return tmp_path_factory.mktemp("redis")


async def _ping(settings: Settings) -> Any:
    from core.redis import create_arq_pool

    pool = await create_arq_pool(
        settings.model_copy(update={"redis_conn_retries": 0, "redis_conn_timeout_s": 5})
    )
    try:
        await pool.set("metricx:tls-test", "ok")
        return await pool.get("metricx:tls-test")
    finally:
        await pool.aclose()


async def test_rediss_verifies_the_certificate_and_the_host_name(pki: Pki, redis_dir: Path) -> None:
    with tls_redis(redis_dir, pki) as port:
        good = Settings(redis_url=f"rediss://localhost:{port}/0", redis_ssl_ca_certs=str(pki.ca))
        assert await _ping(good) == b"ok"
        for bad in (
            good.model_copy(update={"redis_url": f"rediss://127.0.0.1:{port}/0"}),  # not the name it holds
            good.model_copy(update={"redis_ssl_ca_certs": str(pki.other_ca)}),
        ):
            with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
                await _ping(bad)


async def test_rediss_sentinel_speaks_tls_to_sentinels_and_master_and_checks_both(
    pki: Pki, redis_dir: Path
) -> None:
    with tls_redis(redis_dir, pki) as master, tls_sentinel(redis_dir, pki, master) as sentinel:
        url = f"rediss+sentinel://localhost:{sentinel}/mymaster/0"
        good = Settings(redis_url=url, redis_ssl_ca_certs=str(pki.ca))
        assert await _ping(good) == b"ok"  # the Sentinel has only a TLS port: this went over TLS
        # No Sentinel connection verifies (an untrusted CA, then a name the certificate lacks).
        with pytest.raises(MasterNotFoundError):
            await _ping(good.model_copy(update={"redis_ssl_ca_certs": str(pki.other_ca)}))
        with pytest.raises(MasterNotFoundError):
            await _ping(
                good.model_copy(update={"redis_url": f"rediss+sentinel://127.0.0.1:{sentinel}/mymaster/0"})
            )
