"""REDIS_URL forms: redis://, rediss:// with certificate checks on by default, Sentinel, password, db."""

from __future__ import annotations

import pytest

from core.config import Settings
from core.errors import ConfigError
from core.redis import deserialize, redis_settings, serialize


def rs(url: str, **kw: object) -> object:
    return redis_settings(Settings(redis_url=url, **kw))  # type: ignore[arg-type]


def test_plain_url_with_password_and_database() -> None:
    s = rs("redis://:p%40ss@cache:6380/3")
    assert (s.host, s.port, s.database, s.password, s.ssl) == ("cache", 6380, 3, "p@ss", False)  # type: ignore[attr-defined]
    assert (s.conn_timeout, s.conn_retries) == (30, 5)  # type: ignore[attr-defined]


def test_tls_verifies_certificates_unless_told_not_to() -> None:
    s = rs("rediss://default:pw@example.upstash.io:6379")
    assert s.ssl and s.ssl_cert_reqs == "required" and s.ssl_check_hostname  # type: ignore[attr-defined]
    off = rs("rediss://h:6379", redis_ssl_cert_reqs="none")
    assert off.ssl and off.ssl_cert_reqs == "none" and not off.ssl_check_hostname  # type: ignore[attr-defined]


def test_sentinel() -> None:
    s = rs("redis+sentinel://:pw@s1:26379,s2:26380/mymaster/2")
    assert s.sentinel and s.sentinel_master == "mymaster" and s.database == 2  # type: ignore[attr-defined]
    assert s.host == [("s1", 26379), ("s2", 26380)]  # type: ignore[attr-defined]


@pytest.mark.parametrize("url", ["http://localhost:6379", "redis://h:6379/zero", "redis+sentinel://s1:26379"])
def test_bad_urls_say_what_is_wrong(url: str) -> None:
    with pytest.raises(ConfigError):
        rs(url)


def test_jobs_are_msgpack_not_pickle() -> None:
    data = serialize({"f": "process_sync_job", "a": ["c", "w", False, True]})
    assert not data.startswith(b"\x80")  # pickle's protocol marker
    assert deserialize(data) == {"f": "process_sync_job", "a": ["c", "w", False, True]}
