"""ProviderCache against the real Redis: expiry, encryption, namespaces, compare-and-delete locks."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from cryptography.fernet import Fernet, MultiFernet

from core import ProviderCache


@pytest.fixture
def cipher() -> MultiFernet:
    return MultiFernet([Fernet(Fernet.generate_key())])


@pytest.fixture
def key() -> str:
    return f"k-{uuid.uuid4().hex[:8]}"


async def test_values_expire(redis_client: Any, cipher: MultiFernet, key: str) -> None:
    cache = ProviderCache(redis_client, "acme", cipher=cipher)
    assert await cache.set(key, "v", ttl_s=0.2)
    assert await cache.get(key) == "v"
    assert 0 < (await cache.ttl_s(key) or 0) <= 0.2
    await asyncio.sleep(0.3)
    assert await cache.get(key) is None
    with pytest.raises(ValueError, match="must expire"):
        await cache.set(key, "forever", ttl_s=0)


async def test_encrypted_values_are_not_stored_in_plaintext(
    redis_client: Any, cipher: MultiFernet, key: str
) -> None:
    cache = ProviderCache(redis_client, "acme", cipher=cipher)
    await cache.set(key, "ya29.secret-access-token", ttl_s=60, encrypted=True)
    stored = await redis_client.get(f"metricx:cache:acme:{key}")
    assert stored and b"ya29" not in stored and b"secret-access-token" not in stored
    assert await cache.get(key, encrypted=True) == "ya29.secret-access-token"
    # other keys (a rotated-away key, another deployment) cannot read it: a miss, not an error
    other = ProviderCache(redis_client, "acme", cipher=MultiFernet([Fernet(Fernet.generate_key())]))
    assert await other.get(key, encrypted=True) is None


async def test_providers_do_not_see_each_others_keys(
    redis_client: Any, cipher: MultiFernet, key: str
) -> None:
    acme, other = (ProviderCache(redis_client, name, cipher=cipher) for name in ("acme", "other"))
    await acme.set(key, "acme's", ttl_s=60)
    assert await other.get(key) is None
    await other.set(key, "other's", ttl_s=60)
    assert (await acme.get(key), await other.get(key)) == ("acme's", "other's")
    assert await other.delete(key)
    assert await acme.get(key) == "acme's"


async def test_delete_if_value_only_deletes_that_value(
    redis_client: Any, cipher: MultiFernet, key: str
) -> None:
    cache = ProviderCache(redis_client, "acme", cipher=cipher)
    await cache.set(key, "new", ttl_s=60, encrypted=True)
    assert not await cache.delete(key, if_value="stale", encrypted=True)
    assert await cache.get(key, encrypted=True) == "new"
    assert await cache.delete(key, if_value="new", encrypted=True)
    assert await cache.get(key, encrypted=True) is None


async def test_a_lock_is_released_only_by_its_owner(redis_client: Any, cipher: MultiFernet, key: str) -> None:
    cache = ProviderCache(redis_client, "acme", cipher=cipher)
    first = await cache.try_lock(key, ttl_s=0.2)
    assert first is not None
    assert await cache.try_lock(key, ttl_s=5) is None  # held
    await asyncio.sleep(0.3)  # the first holder stalled past its lease
    second = await cache.try_lock(key, ttl_s=5)
    assert second is not None and second.token != first.token
    assert not await cache.release(first)  # a late release must not free the second holder's lock
    assert await cache.try_lock(key, ttl_s=5) is None
    assert await cache.release(second)
    assert await cache.try_lock(key, ttl_s=5) is not None
