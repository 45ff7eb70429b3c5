"""The limiter's throttle scopes against a real Redis: keys, trust, fall-backs, one round trip."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from redis.asyncio import Redis

from core.config import get_settings
from core.errors import RateLimited
from core.providers import AccountRef, Credentials
from core.ratelimit import AccountLimiter, block_key
from core.sync.throttle import scope_keys

SECRET_TOKEN = "EAAB-very-secret-token"
DEVELOPER_TOKEN = "dev-token-kept-secret"


class Plain:
    """A provider that declares nothing: the core's default scopes (account, token)."""

    name = "plain"


class WithApp:
    """A provider with an app and a developer token from its (operator) settings."""

    name = "withapp"

    def __init__(self, app: str = "app-1") -> None:
        self.app = app

    def throttle_scopes(self, account: AccountRef, credentials: Credentials) -> Mapping[str, str]:
        return {"app": self.app, "developer": DEVELOPER_TOKEN}


class CountingRedis(Redis):
    """Counts the commands sent, to check that acquire() asks Redis once per call."""

    commands: list[str]

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands.append(str(args[0]))
        return await super().execute_command(*args, **options)


@pytest.fixture
async def redis(metricx_env: Any) -> AsyncIterator[CountingRedis]:
    client = CountingRedis.from_url(metricx_env.redis_url)
    client.commands = []
    yield client
    await client.aclose()


def ref(account: str = "1001", connection_id: str | None = None) -> AccountRef:
    return AccountRef(
        connection_id=connection_id or str(uuid.uuid4()), workspace_id="w", external_account_id=account
    )


def limiter(
    redis: Redis, provider: Any, account: AccountRef, creds: Credentials, *, max_wait_s: float = 30.0
) -> AccountLimiter:
    scopes = scope_keys(provider, account, creds)
    return AccountLimiter(
        redis, provider.name, account.external_account_id, scopes=scopes, max_wait_s=max_wait_s
    )


def test_keys_name_secrets_by_a_keyed_digest_only(metricx_env: Any) -> None:
    keys = scope_keys(WithApp(), ref(), Credentials(access_token=SECRET_TOKEN))
    text = " ".join(keys.keys.values())
    assert SECRET_TOKEN not in text and DEVELOPER_TOKEN not in text and "app-1" not in text
    assert set(keys.keys) == {"account", "token", "app", "developer", "connection"}
    # The refresh token is the credential's identity: a new access token is the same credential.
    first = scope_keys(Plain(), ref(), Credentials("access-1", refresh_token="refresh"))
    second = scope_keys(Plain(), ref(), Credentials("access-2", refresh_token="refresh"))
    assert first.keys["token"] == second.keys["token"]
    # Without the encryption key nobody can recompute a digest from a guessed token.
    other_key = get_settings().model_copy(
        update={"encryption_keys": SecretStr(Fernet.generate_key().decode())}
    )
    rekeyed = scope_keys(Plain(), ref(), Credentials("access-1", refresh_token="refresh"), settings=other_key)
    assert rekeyed.keys["token"] != first.keys["token"]


async def test_an_unverified_account_block_lands_on_the_token(redis: CountingRedis) -> None:
    victim = ref("2001")
    victim_keys = scope_keys(Plain(), victim, Credentials("victim-token")).verified()
    attacker = limiter(redis, Plain(), ref("2001"), Credentials("attacker-token"))
    assert await attacker.block(300) == "token"
    assert await attacker.blocked_for() > 290
    victim_limiter = AccountLimiter(redis, "plain", "2001", scopes=victim_keys)
    assert await victim_limiter.blocked_for() == 0
    # Once the attacker's credential is shown to reach the account, an account block is the account's.
    attacker.trust_account()
    assert await attacker.block(300) == "account"
    assert await victim_limiter.blocked_for() > 290


async def test_stored_keys_are_trusted_only_with_the_same_credential(redis: CountingRedis) -> None:
    account = ref("3001")
    verified = scope_keys(Plain(), account, Credentials("token-x")).verified()
    stored = verified.shared()
    assert verified.keys["account"] in stored and not any(k.startswith("connection:") for k in stored)
    assert scope_keys(Plain(), account, Credentials("token-x"), trusted=stored).account_verified
    assert not scope_keys(Plain(), account, Credentials("token-y"), trusted=stored).account_verified
    # Before verification the account key is not shared (the SQL marking never reaches it).
    assert scope_keys(Plain(), account, Credentials("token-x")).keys["account"] not in (
        scope_keys(Plain(), account, Credentials("token-x")).shared()
    )


async def test_undeclared_scopes_fall_back_to_the_credential_then_the_connection(
    redis: CountingRedis,
) -> None:
    plain = limiter(redis, Plain(), ref(), Credentials("t-1"))
    assert await plain.block(10, scope="app") == "token"
    assert await plain.block(10, scope="daily") == "token"  # unknown scope: account, untrusted: token
    nothing = limiter(redis, Plain(), ref("4001"), Credentials())
    assert await nothing.block(10, scope="account") == "connection"
    # What acquire() then raises names that narrow scope, and it stays narrow when blocked again.
    nothing.max_wait_s = 1
    with pytest.raises(RateLimited) as caught:
        await nothing.acquire()
    assert caught.value.scope == "connection"
    assert nothing.scope_key(caught.value.scope)[0] == "connection"
    other = limiter(redis, Plain(), ref("4001"), Credentials())
    assert await other.blocked_for() == 0  # another connection of the same account id


async def test_acquire_honours_every_scope_with_one_round_trip(redis: CountingRedis) -> None:
    app_1 = limiter(redis, WithApp("app-1"), ref("5001"), Credentials("t-1"))
    same_app = limiter(redis, WithApp("app-1"), ref("5002"), Credentials("t-2"), max_wait_s=1)
    other_app = limiter(redis, WithApp("app-2"), ref("5003"), Credentials("t-3"), max_wait_s=1)
    # (the developer token is shared by both apps here; block only the app)
    assert await app_1.block(120, scope="app") == "app"
    redis.commands.clear()
    with pytest.raises(RateLimited) as caught:
        await same_app.acquire()
    assert caught.value.scope == "app" and caught.value.retry_after_s > 100
    assert redis.commands == ["MGET"]
    redis.commands.clear()
    await other_app.acquire()
    assert redis.commands == ["MGET"] and other_app.calls == 1


async def test_a_block_is_never_shortened(redis: CountingRedis) -> None:
    key = f"plain:app:{uuid.uuid4().hex}"
    long_end = await block_key(redis, key, 600)
    assert await block_key(redis, key, 5) == long_end
    assert 590 < float(await redis.pttl(f"metricx:rl:{key}:blocked")) / 1000 <= 600


async def test_a_steady_rate_costs_one_round_trip_and_still_honours_blocks(redis: CountingRedis) -> None:
    paced = limiter(redis, WithApp("app-9"), ref("5009"), Credentials("t-9"), max_wait_s=1)
    paced.configure(rate_per_s=1000, burst=5)
    await paced.acquire()  # loads the script on first use
    redis.commands.clear()
    for _ in range(3):
        await paced.acquire()
    assert redis.commands == ["EVALSHA"] * 3 and paced.calls == 4
    other = limiter(redis, WithApp("app-9"), ref("5010"), Credentials("t-10"))
    assert await other.block(120, scope="app") == "app"
    with pytest.raises(RateLimited) as caught:
        await paced.acquire()
    assert caught.value.scope == "app" and caught.value.retry_after_s > 100


async def test_a_steady_rate_spaces_requests_beyond_the_burst(redis: CountingRedis) -> None:
    paced = limiter(redis, Plain(), ref("5011"), Credentials("t-11"), max_wait_s=0.001)
    paced.configure(rate_per_s=0.01, burst=2)  # two now, the third in 100 s
    await paced.acquire()
    await paced.acquire()
    with pytest.raises(RateLimited):
        await paced.acquire()
