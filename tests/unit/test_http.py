"""ProviderHTTP over scripted responses (httpx.MockTransport) and the real Redis limiter."""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from core import (
    AuthError,
    ConfigError,
    ConnectionLost,
    MetricxError,
    PermanentError,
    ProviderAPI,
    ProviderContext,
    RateLimited,
    RetryPolicy,
    TransientError,
    Usage,
    provider_context,
)

URL = "http://api.test/v1/things"
Handler = Callable[[httpx.Request], httpx.Response]


class FastAPI(ProviderAPI):
    name = "Test API"
    policy = RetryPolicy(transient_retries=1, backoff_s=0.0, throttle_retries=1, max_wait_s=1.0)


@pytest.fixture
async def make_ctx(redis_client: Any) -> Any:
    clients: list[httpx.AsyncClient] = []

    def make(handler: Handler) -> ProviderContext:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        clients.append(client)
        return provider_context(
            redis=redis_client, client=client, provider="testhttp", account=uuid.uuid4().hex
        )

    yield make
    for client in clients:
        await client.aclose()


def scripted(*answers: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler, seen


@pytest.mark.parametrize(
    ("failure", "error", "words"),
    [
        (httpx.ReadTimeout("slow"), TransientError, "did not answer in time (ReadTimeout)"),
        (httpx.ConnectTimeout("slow"), TransientError, "did not answer in time (ConnectTimeout)"),
        (httpx.ConnectError("refused"), TransientError, "unreachable (ConnectError)"),
        (httpx.RemoteProtocolError("closed"), ConnectionLost, "mid-answer (RemoteProtocolError)"),
        (httpx.ReadError("reset"), ConnectionLost, "connection broke"),
        (httpx.TooManyRedirects("loop"), PermanentError, "redirected too many times"),
    ],
)
async def test_transport_errors_map_through_the_one_table(
    make_ctx: Any, failure: Exception, error: type[MetricxError], words: str
) -> None:
    handler, seen = scripted(failure)
    ctx = make_ctx(handler)
    api = ProviderAPI()
    api.policy = RetryPolicy(transient_retries=0)
    with pytest.raises(error) as caught:
        await ctx.http.get(api, URL, params={"access_token": "s3cret"})
    assert type(caught.value) is error
    assert words in caught.value.message and "/v1/things" in caught.value.message
    assert "s3cret" not in caught.value.message  # the query (where tokens travel) is never quoted
    assert len(seen) == 1 and ctx.limiter.calls == 1


async def test_a_timeout_is_retried_once_in_the_request_then_raised(make_ctx: Any) -> None:
    handler, seen = scripted(httpx.ReadTimeout("slow"))
    ctx = make_ctx(handler)
    with pytest.raises(TransientError, match="did not answer in time"):
        await ctx.http.get(FastAPI(), URL)
    assert len(seen) == 2  # the try and the one retry of the policy
    assert ctx.limiter.calls == 2  # every try counts (sync_runs.api_calls)


async def test_a_transient_failure_then_success_returns_the_answer(make_ctx: Any) -> None:
    handler, seen = scripted(httpx.Response(503), httpx.Response(200, json={"ok": True}))
    ctx = make_ctx(handler)
    response = await ctx.http.get(FastAPI(), URL)
    assert response.json() == {"ok": True}
    assert len(seen) == ctx.limiter.calls == 2


async def test_the_plugin_may_refuse_an_in_request_retry(make_ctx: Any) -> None:
    class NoRetry(FastAPI):
        def retry_in_request(self, error: MetricxError) -> bool:
            return False

    handler, seen = scripted(httpx.Response(500))
    ctx = make_ctx(handler)
    with pytest.raises(TransientError, match="HTTP 500"):
        await ctx.http.get(NoRetry(), URL)
    assert len(seen) == 1


async def test_a_short_retry_after_is_waited_out_once_in_the_request(make_ctx: Any) -> None:
    handler, seen = scripted(
        httpx.Response(429, headers={"Retry-After": "0.3"}), httpx.Response(200, json={"n": 1})
    )
    ctx = make_ctx(handler)
    started = time.monotonic()
    response = await ctx.http.get(FastAPI(), URL)
    assert response.json() == {"n": 1}
    assert len(seen) == ctx.limiter.calls == 2
    assert time.monotonic() - started >= 0.25  # waited in the limiter, so every worker waited too
    assert ctx.limiter.stats()["seconds_throttled"] > 0


async def test_a_second_short_throttle_is_raised_for_the_job_to_defer(make_ctx: Any) -> None:
    handler, seen = scripted(httpx.Response(429, headers={"Retry-After": "0.1"}))
    ctx = make_ctx(handler)
    with pytest.raises(RateLimited):
        await ctx.http.get(FastAPI(), URL)
    assert len(seen) == 2


async def test_a_long_retry_after_raises_rate_limited_and_blocks_the_account(make_ctx: Any) -> None:
    handler, seen = scripted(httpx.Response(429, headers={"Retry-After": "120"}))
    ctx = make_ctx(handler)
    with pytest.raises(RateLimited) as caught:
        await ctx.http.get(FastAPI(), URL)
    assert caught.value.retry_after_s == 120.0
    assert len(seen) == 1
    assert 110 < await ctx.limiter.blocked_for() <= 120  # other workers wait too
    with pytest.raises(RateLimited):
        await ctx.http.get(FastAPI(), URL)  # refused by the limiter before any request
    assert len(seen) == 1 and ctx.limiter.calls == 1


async def test_usage_is_fed_to_the_limiter_from_every_answer(make_ctx: Any) -> None:
    class Metered(FastAPI):
        def usage(self, response: httpx.Response) -> Usage | None:
            pct = response.headers.get("x-usage")
            return Usage(pct=float(pct), regain_s=90) if pct else None

    handler, _ = scripted(httpx.Response(200, headers={"x-usage": "97"}, json={}))
    ctx = make_ctx(handler)
    await ctx.http.get(Metered(), URL)  # succeeds, but says the quota is nearly gone
    assert 80 < await ctx.limiter.blocked_for() <= 90


async def test_usage_can_set_a_steady_rate_every_worker_paces_at(make_ctx: Any) -> None:
    class Bucket(FastAPI):
        def usage(self, response: httpx.Response) -> Usage | None:
            return Usage(rate_per_s=10.0, burst=1)

    handler, seen = scripted(httpx.Response(200, json={}))
    ctx = make_ctx(handler)
    started = time.monotonic()
    for _ in range(4):
        await ctx.http.get(Bucket(), URL)
    # the first call sets the rate; the next three are paced at 10/s by the shared limiter
    assert time.monotonic() - started >= 0.18
    assert ctx.limiter.rate_per_s == 10.0 and len(seen) == 4


async def test_two_workers_of_one_account_share_the_steady_rate(redis_client: Any) -> None:
    class Bucket(FastAPI):
        def usage(self, response: httpx.Response) -> Usage | None:
            return Usage(rate_per_s=10.0, burst=1)

    account = uuid.uuid4().hex
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200))) as client:
        workers = [
            provider_context(redis=redis_client, client=client, provider="testhttp", account=account)
            for _ in range(2)
        ]
        for ctx in workers:
            await ctx.http.get(Bucket(), URL)  # each learns the rate from its first answer
        started = time.monotonic()
        await asyncio.gather(*(ctx.http.get(Bucket(), URL) for ctx in workers for _ in range(3)))
    # six calls at 10/s between them: the pacing state is in Redis, not in either worker
    assert time.monotonic() - started >= 0.45


async def test_classify_maps_the_status_when_the_plugin_adds_nothing(make_ctx: Any) -> None:
    for status, error in [(401, AuthError), (404, ConfigError), (418, PermanentError)]:
        handler, seen = scripted(httpx.Response(status))
        with pytest.raises(error):
            await make_ctx(handler).http.get(FastAPI(), URL)
        assert len(seen) == 1  # never retried


async def test_a_rejected_token_is_refreshed_once_and_the_call_resent(make_ctx: Any) -> None:
    class Tokens:
        def __init__(self) -> None:
            self.token = "old"
            self.refreshes = 0

        async def headers(self) -> dict[str, str]:
            return {"Authorization": f"Bearer {self.token}"}

        async def refresh(self) -> None:
            self.refreshes += 1
            self.token = f"new{self.refreshes}"

    def handler(request: httpx.Request) -> httpx.Response:
        ok = request.headers["Authorization"] == "Bearer new1"
        return httpx.Response(200 if ok else 401, json={})

    ctx = make_ctx(handler)
    tokens = Tokens()
    assert (await ctx.http.get(FastAPI(), URL, auth=tokens)).status_code == 200
    assert tokens.refreshes == 1 and ctx.limiter.calls == 2
    tokens.token = "revoked"
    with pytest.raises(AuthError):
        await ctx.http.get(FastAPI(), URL, auth=tokens)  # refreshed once more, still refused: raised
    assert tokens.refreshes == 2


async def test_the_context_builder_gives_one_limiter_to_http_and_a_provider_cache(make_ctx: Any) -> None:
    ctx = make_ctx(scripted(httpx.Response(200))[0])
    assert ctx.http.limiter is ctx.limiter
    assert ctx.cache.namespace == "metricx:cache:testhttp:"


async def test_usage_is_read_from_error_answers_too(make_ctx: Any) -> None:
    class Metered(FastAPI):
        def usage(self, response: httpx.Response) -> Usage | None:
            return Usage(block_s=40.0)

    handler, _ = scripted(httpx.Response(404))
    ctx = make_ctx(handler)
    with pytest.raises(ConfigError):
        await ctx.http.get(Metered(), URL)
    assert 35 < await ctx.limiter.blocked_for() <= 40


async def test_an_answer_is_freed_as_soon_as_the_plugin_drops_it(make_ctx: Any) -> None:
    # httpx links a response and its stream both ways; a backfill's bodies must not wait for the GC.
    ctx = make_ctx(lambda request: httpx.Response(200, content=b"x" * 100_000))
    gc.disable()
    try:
        response = await ctx.http.get(FastAPI(), URL)
        assert response.content == b"x" * 100_000
        freed = weakref.ref(response)
        del response
        assert freed() is None
    finally:
        gc.enable()
