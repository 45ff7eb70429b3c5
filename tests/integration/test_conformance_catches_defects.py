"""The conformance suite fails providers that break the contract (a suite that cannot fail is useless)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from metricx_testprovider.provider import TestProvider

import tests.integration.test_conformance_testprovider as adopter
from core import ApiVersion
from core.errors import PermanentError, TransientError
from core.providers import AccountRef, Credentials, MetricRecord, Provider, ProviderContext, SyncWindow
from core.testing.conformance import SimulatorProcess, simulator_process


class HoardingProvider(TestProvider):
    """Collects the whole window before yielding it as one batch."""

    async def fetch_metrics(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials, window: SyncWindow
    ) -> AsyncIterator[list[MetricRecord]]:
        everything = [
            r async for batch in super().fetch_metrics(ctx, account, credentials, window) for r in batch
        ]
        yield everything


class MisclassifyingProvider(TestProvider):
    """Reports a 5xx as a permanent error, so the engine would never retry it."""

    async def fetch_metrics(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials, window: SyncWindow
    ) -> AsyncIterator[list[MetricRecord]]:
        try:
            async for batch in super().fetch_metrics(ctx, account, credentials, window):
                yield batch
        except TransientError as exc:
            raise PermanentError(exc.message) from exc


class DuplicatingProvider(TestProvider):
    """Yields every page twice."""

    async def fetch_metrics(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials, window: SyncWindow
    ) -> AsyncIterator[list[MetricRecord]]:
        async for batch in super().fetch_metrics(ctx, account, credentials, window):
            yield batch
            yield batch


@pytest.fixture(scope="module")
def tp_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    log = tmp_path_factory.mktemp("tp-sim-defects") / "simulator.log"
    with simulator_process("metricx_testprovider.simulator:app", log_path=log) as sim:
        yield sim


def _suite(sim: SimulatorProcess, provider: Provider) -> adopter.TestTestProviderConformance:
    suite = adopter.TestTestProviderConformance()
    suite.sim = sim
    suite.control(reset=True)
    suite.provider = lambda: provider  # type: ignore[method-assign]
    return suite


@pytest.fixture
async def ctx_for(redis_client: Any) -> Any:
    from core import provider_context

    clients = []

    def make(suite: adopter.TestTestProviderConformance) -> ProviderContext:
        http = suite.http_client()
        clients.append(http)
        return provider_context(redis=redis_client, client=http, provider="testprovider", account="defects")

    yield make
    for http in clients:
        await http.aclose()


async def test_memory_check_fails_a_provider_that_collects_the_window(tp_sim: Any, ctx_for: Any) -> None:
    suite = _suite(tp_sim, HoardingProvider())
    suite.max_batch_size = 100_000  # isolate the memory check from the batch size check
    with pytest.raises(AssertionError, match="peak memory grew"):
        await suite.test_backfill_memory_does_not_grow_with_the_window(ctx_for(suite))


async def test_fault_check_fails_a_provider_that_misclassifies_5xx(tp_sim: Any, ctx_for: Any) -> None:
    suite = _suite(tp_sim, MisclassifyingProvider())
    with pytest.raises(AssertionError, match="must raise TransientError, got PermanentError"):
        await suite.test_faults_raise_the_right_error(ctx_for(suite), "server_error")


async def test_window_check_fails_a_provider_that_repeats_records(tp_sim: Any, ctx_for: Any) -> None:
    from core.providers import SyncMode

    suite = _suite(tp_sim, DuplicatingProvider())
    with pytest.raises(AssertionError, match="repeat a \\(level, entity, date\\) key"):
        await suite.test_metric_records_cover_the_window(ctx_for(suite), SyncMode.attribution)


class SunsetProvider(TestProvider):
    """Defaults to an API version the platform already retired."""

    api_version = ApiVersion("v0", date(2020, 1, 1))


class MistypedVersionProvider(TestProvider):
    """Declares its API version as a bare string."""

    api_version = "v1"  # type: ignore[assignment]


def test_lifecycle_check_fails_a_provider_whose_default_version_is_sunset(tp_sim: Any) -> None:
    suite = _suite(tp_sim, SunsetProvider())
    with pytest.raises(AssertionError, match="defaults to API v0, which the platform retired on 2020-01-01"):
        suite.test_api_version_is_not_past_its_sunset()


def test_lifecycle_check_passes_a_version_before_its_sunset_and_fails_a_mistyped_one(tp_sim: Any) -> None:
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    provider = TestProvider()
    provider.api_version = ApiVersion("v9", tomorrow)  # type: ignore[misc]
    _suite(tp_sim, provider).test_api_version_is_not_past_its_sunset()
    with pytest.raises(AssertionError, match=r"api_version must be a core\.ApiVersion"):
        _suite(tp_sim, MistypedVersionProvider()).test_api_version_is_not_past_its_sunset()
