"""The provider conformance suite: subclass :class:`ProviderConformance` in a plugin's tests.

Every provider, built-in or third-party, runs the same checks against its
simulator (or recorded responses): registration and capabilities, the token
validator, the entity hierarchy, metric records for each sync window, account
timezone day boundaries, idempotent re-fetch into a real database, error
classification, bounded memory on a large backfill, and an API version not past
its sunset. Needs the fixtures of ``core.testing.plugin`` (loaded automatically:
entry point ``pytest11``) and pytest-asyncio in auto mode with a session loop.
"""

from __future__ import annotations

import dataclasses
import gc
import inspect
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from core.context import provider_context
from core.errors import AuthError, MetricxError, RateLimited, TransientError
from core.lifecycle import api_version_of
from core.providers import (
    AccountRef,
    ApiVersion,
    Credentials,
    EntityRecord,
    MetricRecord,
    Provider,
    ProviderContext,
    SyncMode,
    SyncWindow,
)
from core.ratelimit import AccountLimiter
from core.sync.windows import local_today, windows_for
from core.testing.simulator_process import SimulatorProcess, simulator_process

__all__ = ["FAULTS", "ProviderConformance", "SimulatorProcess", "simulator_process"]

#: The faults ``inject_fault`` must switch on, and the error each must become.
FAULTS: dict[str, type[MetricxError]] = {
    "throttle": RateLimited,
    "expired_token": AuthError,
    "server_error": TransientError,
}
CREDENTIAL_KINDS = ("valid", "missing", "expired")

MetricKey = tuple[str, str, Any]


async def _maybe_await(value: object) -> None:
    if inspect.isawaitable(value):
        await value


class ProviderConformance:
    """Base class of a provider's conformance tests; pytest runs every ``test_*`` method below.

    Subclass it as ``class TestAcmeConformance(ProviderConformance):`` and set
    ``provider_name`` (or override :meth:`provider`), then implement the adapter:
    :meth:`account`, :meth:`credentials`, :meth:`http_client`, :meth:`inject_fault`
    and, optionally, :meth:`large_account`, :meth:`timezone_accounts`, :meth:`now`
    and ``expected_levels``. To reach fixtures (a simulator, a fresh state per
    test), add an autouse fixture to the subclass that stores them on ``self``.
    A failing check names the contract it enforces.
    """

    #: The provider's registered name; the default :meth:`provider` returns the registered instance.
    provider_name: str = ""
    #: Levels the seeded account must have entities at (default: every level in the capabilities).
    expected_levels: tuple[str, ...] | None = None
    #: Largest batch a provider may yield (the engine upserts one batch per transaction).
    max_batch_size: int = 5000
    #: Peak memory of the long backfill divided by the short one must stay below this.
    memory_ratio_bound: float = 1.5
    short_backfill_days: int = 30
    long_backfill_days: int = 90

    # -- adapter: what a provider author implements ---------------------------------------------

    def provider(self) -> Provider:
        """The provider under test; the default is the instance its entry point registered."""
        from core.plugins import get_registry

        assert self.provider_name, "set provider_name on the conformance class or override provider()"
        return get_registry().provider(self.provider_name)

    def account(self) -> AccountRef:
        """An AccountRef for a seeded simulator account with entities and metric history."""
        raise NotImplementedError("implement account() on the conformance class")

    def credentials(self, kind: str) -> Credentials:
        """Credentials of ``kind``: "valid", "missing" (no token) or "expired" (rejected, not refreshable)."""
        raise NotImplementedError("implement credentials(kind) on the conformance class")

    def http_client(self) -> httpx.AsyncClient:
        """A new client that reaches the simulator (e.g. ``httpx.ASGITransport(app=...)``)."""
        raise NotImplementedError("implement http_client() on the conformance class")

    def inject_fault(self, kind: str) -> Awaitable[None] | None:
        """Make the simulator fail every following call: "throttle", "expired_token", "server_error"."""
        raise NotImplementedError("implement inject_fault(kind) on the conformance class")

    def large_account(self) -> AccountRef:
        """An account with enough entities that a 90-day backfill spans many pages."""
        return self.account()

    def timezone_accounts(self) -> Sequence[AccountRef]:
        """Accounts whose day boundaries to check; include one far from UTC when the simulator can."""
        return [self.account()]

    def now(self) -> datetime:
        """The simulator's current time (override when the simulator runs on a frozen clock)."""
        return datetime.now(UTC)

    # -- helpers ----------------------------------------------------------------------------------

    @pytest.fixture
    async def conformance_ctx(self, redis_client: Any) -> AsyncIterator[ProviderContext]:
        """A ProviderContext over :meth:`http_client` and a real Redis limiter unique to this test."""
        async with self.http_client() as http:
            provider, account = self.provider(), self.account()
            limiter = AccountLimiter(
                redis_client,
                provider.name,
                account.external_account_id,
                prefix=f"metricx:conformance:{uuid.uuid4().hex[:8]}",
            )
            yield provider_context(
                redis=redis_client, client=http, provider=provider, account=account, limiter=limiter
            )

    async def _localised(self, ctx: ProviderContext, account: AccountRef) -> AccountRef:
        """The account as the engine sees it after ``fetch_account``: with the platform's timezone."""
        info = await self.provider().fetch_account(ctx, account, self.credentials("valid"))
        return dataclasses.replace(account, timezone=info.timezone, currency=info.currency)

    async def _entities(self, ctx: ProviderContext, account: AccountRef) -> list[list[EntityRecord]]:
        provider = self.provider()
        return [batch async for batch in provider.sync_entities(ctx, account, self.credentials("valid"))]

    async def _metrics(
        self, ctx: ProviderContext, account: AccountRef, window: SyncWindow
    ) -> list[list[MetricRecord]]:
        creds = self.credentials("valid")
        return [batch async for batch in self.provider().fetch_metrics(ctx, account, creds, window)]

    def _window(self, mode: SyncMode, account: AccountRef) -> SyncWindow:
        caps = self.provider().capabilities
        return windows_for(mode, caps, account.timezone, self.now(), last_completed_at=None)[0]

    def _check_batches(self, batches: list[list[MetricRecord]], window: SyncWindow) -> list[MetricRecord]:
        levels = set(self.provider().capabilities.levels)
        days = set(window.dates())
        records: list[MetricRecord] = []
        for batch in batches:
            assert isinstance(batch, list), f"fetch_metrics must yield lists, got {type(batch).__name__}"
            assert len(batch) <= self.max_batch_size, (
                f"a batch of {len(batch)} records exceeds {self.max_batch_size}: yield smaller batches"
            )
            for record in batch:
                assert isinstance(record, MetricRecord), f"yielded {type(record).__name__}, not MetricRecord"
                assert record.level in levels, f"record level {record.level!r} is not in capabilities.levels"
                assert record.metrics_date in days, (
                    f"record for {record.metrics_date} is outside the window {window} "
                    "(days are the account's local calendar days)"
                )
            records.extend(batch)
        return records

    @staticmethod
    def _unique_keys(records: list[MetricRecord]) -> set[MetricKey]:
        keys = [(r.level, r.entity_external_id, r.metrics_date) for r in records]
        duplicates = len(keys) - len(set(keys))
        assert duplicates == 0, f"{duplicates} records repeat a (level, entity, date) key in one fetch"
        return set(keys)

    async def _run_sync_steps(self, ctx: ProviderContext, creds: Credentials) -> None:
        """What the engine calls in one sync, in order; the first error propagates."""
        provider, account = self.provider(), self.account()
        provider.check_credentials(creds)
        await provider.validate_token(ctx, account, creds)
        info = await provider.fetch_account(ctx, account, creds)
        account = dataclasses.replace(account, timezone=info.timezone)
        async for _ in provider.sync_entities(ctx, account, creds):
            pass
        async for _ in provider.fetch_metrics(ctx, account, creds, self._window(SyncMode.realtime, account)):
            pass

    # -- registration and capabilities ------------------------------------------------------------

    def test_provider_is_registered_by_its_entry_point(self) -> None:
        from core.plugins import get_registry

        provider = self.provider()
        registry = get_registry()
        assert provider.name in registry.providers, (
            f"no installed plugin registers provider {provider.name!r} "
            f"(registered: {sorted(registry.providers)}; problems: {[p.message for p in registry.problems]})"
        )
        assert type(registry.providers[provider.name]) is type(provider), (
            "provider() must return the class the entry point registers"
        )
        owner = registry.provider_owner[provider.name]
        info = next(p for p in registry.plugins if p.name == owner)
        assert "metricx_core_version" in info.hooks, (
            f"plugin {owner!r} should declare the core versions it supports (hook metricx_core_version)"
        )

    def test_capabilities_are_complete(self) -> None:
        provider = self.provider()
        caps = provider.capabilities
        assert provider.name.isidentifier() and provider.name == provider.name.lower(), (
            f"provider name {provider.name!r} must be a lowercase identifier (it is stored on connections)"
        )
        assert provider.display_name, "display_name is shown to users and must not be empty"
        assert caps.levels and all(isinstance(level, str) and level for level in caps.levels)
        assert caps.attribution_window_days >= 1
        assert caps.backfill_days >= caps.attribution_window_days
        assert 1 <= caps.backfill_slice_days <= caps.backfill_days
        if self.expected_levels is not None:
            assert set(self.expected_levels) <= set(caps.levels)

    def test_api_version_is_not_past_its_sunset(self) -> None:
        provider = self.provider()
        declared = getattr(provider, "api_version", None)
        assert declared is None or isinstance(declared, ApiVersion), (
            f"api_version must be a core.ApiVersion(version, sunset), got {type(declared).__name__}"
        )
        api = api_version_of(provider)
        assert api.version, "api_version.version names the platform API version, e.g. 'v25.0'"
        today = datetime.now(UTC).date()
        assert api.sunset is None or not api.is_sunset(today), (
            f"provider {provider.name!r} defaults to API {api.version}, which the platform retired on "
            f"{api.sunset.isoformat()}: its calls fail; move the default to a supported version"
        )

    # -- token validator ----------------------------------------------------------------------------

    async def test_valid_token_is_accepted(self, conformance_ctx: ProviderContext) -> None:
        provider, creds = self.provider(), self.credentials("valid")
        provider.check_credentials(creds)
        refreshed = await provider.validate_token(conformance_ctx, self.account(), creds)
        assert refreshed is None or isinstance(refreshed, Credentials), (
            "validate_token returns None, or the refreshed Credentials to store"
        )
        if refreshed is not None:
            assert refreshed.access_token or refreshed.refresh_token

    @pytest.mark.parametrize("kind", ["missing", "expired"])
    async def test_unusable_token_raises_auth_error(
        self, conformance_ctx: ProviderContext, kind: str
    ) -> None:
        provider, creds = self.provider(), self.credentials(kind)
        with pytest.raises(AuthError) as caught:
            provider.check_credentials(creds)
            await provider.validate_token(conformance_ctx, self.account(), creds)
        assert caught.value.message, "an AuthError must tell the user what to do (e.g. reconnect)"

    # -- entities, windows, timezones ---------------------------------------------------------------

    async def test_account_reports_timezone_and_currency(self, conformance_ctx: ProviderContext) -> None:
        info = await self.provider().fetch_account(conformance_ctx, self.account(), self.credentials("valid"))
        ZoneInfo(info.timezone)  # raises for a name that is not an IANA timezone
        assert len(info.currency) == 3 and info.currency.isupper(), (
            f"currency {info.currency!r} is not ISO 4217"
        )

    async def test_entity_hierarchy(self, conformance_ctx: ProviderContext) -> None:
        levels = self.provider().capabilities.levels
        seen: set[tuple[str, str]] = set()
        for batch in await self._entities(conformance_ctx, self.account()):
            assert isinstance(batch, list) and len(batch) <= self.max_batch_size
            batch_keys = {(e.level, e.external_id) for e in batch}
            for entity in batch:
                assert isinstance(entity, EntityRecord)
                assert entity.level in levels, f"entity level {entity.level!r} is not in capabilities.levels"
                key = (entity.level, entity.external_id)
                assert key not in seen, f"entity {key} is yielded twice"
                if entity.parent_external_id:
                    parent = (str(entity.parent_level), entity.parent_external_id)
                    assert parent in seen or parent in batch_keys, (
                        f"entity {key} comes before its parent {parent}: yield parents first"
                    )
                    assert parent[0] in levels and levels.index(parent[0]) < levels.index(entity.level), (
                        f"entity {key}: parent level {parent[0]!r} must come before it in capabilities.levels"
                    )
            seen |= batch_keys
        expected = set(self.expected_levels or levels)
        found = {level for level, _ in seen}
        assert expected <= found, f"the seeded account has no entities at levels {sorted(expected - found)}"

    @pytest.mark.parametrize("mode", [SyncMode.realtime, SyncMode.attribution, SyncMode.backfill])
    async def test_metric_records_cover_the_window(
        self, conformance_ctx: ProviderContext, mode: SyncMode
    ) -> None:
        account = await self._localised(conformance_ctx, self.account())
        window = self._window(mode, account)
        records = self._check_batches(await self._metrics(conformance_ctx, account, window), window)
        assert records, f"no metric records for the seeded account in {window}"
        self._unique_keys(records)
        entities = {
            (e.level, e.external_id) for b in await self._entities(conformance_ctx, account) for e in b
        }
        unknown = {(r.level, r.entity_external_id) for r in records} - entities
        assert not unknown, f"metrics for entities the entity sync does not list: {sorted(unknown)[:5]}"

    async def test_days_follow_the_account_timezone(self, conformance_ctx: ProviderContext) -> None:
        for base in self.timezone_accounts():
            account = await self._localised(conformance_ctx, base)
            today = local_today(account.timezone, self.now())
            window = SyncWindow(SyncMode.realtime, today, today, account.timezone)
            records = self._check_batches(await self._metrics(conformance_ctx, account, window), window)
            assert records, (
                f"no records for the account's today ({today} in {account.timezone}, "
                f"{self.now():%Y-%m-%d %H:%M} UTC): days must be the account's local days"
            )

    # -- idempotency against the real database ------------------------------------------------------

    async def test_attribution_refetch_adds_no_rows(
        self, conformance_ctx: ProviderContext, metricx_env: Any
    ) -> None:
        from sqlalchemy import func, select

        from core.db.engine import session_scope
        from core.db.models import MetricSnapshot
        from core.services import create_connection, create_workspace
        from core.sync.upserts import upsert_entities, upsert_snapshots

        account = await self._localised(conformance_ctx, self.account())
        async with session_scope() as session:
            ws = await create_workspace(session, f"conformance-{uuid.uuid4().hex[:6]}")
            conn = await create_connection(
                session,
                ws.id,
                self.provider().name,
                account.external_account_id,
                self.credentials("valid"),
                timezone=account.timezone,
                currency=account.currency,
                config=dict(account.config),
            )
        for batch in await self._entities(conformance_ctx, account):
            async with session_scope() as session:
                await upsert_entities(session, ws.id, conn.id, batch)
        window = self._window(SyncMode.attribution, account)
        totals = select(func.count(), func.coalesce(func.sum(MetricSnapshot.spend), Decimal(0))).where(
            MetricSnapshot.connection_id == conn.id
        )
        results: list[tuple[int, Decimal]] = []
        for _ in range(2):
            records = self._check_batches(await self._metrics(conformance_ctx, account, window), window)
            async with session_scope() as session:
                for start in range(0, len(records), self.max_batch_size):
                    chunk = records[start : start + self.max_batch_size]
                    await upsert_snapshots(
                        session,
                        ws.id,
                        conn.id,
                        chunk,
                        timezone=account.timezone,
                        currency=None,
                        now=self.now(),
                    )
            async with session_scope() as session:
                rows, spend = (await session.execute(totals)).one()
                results.append((int(rows), Decimal(spend)))
            self._unique_keys(records)
        assert results[0][0] > 0, f"the attribution window {window} wrote no rows"
        assert results[1] == results[0], (
            f"re-fetching {window} changed (rows, spend) from {results[0]} to {results[1]}"
        )

    # -- errors ---------------------------------------------------------------------------------------

    @pytest.mark.parametrize("fault", sorted(FAULTS))
    async def test_faults_raise_the_right_error(self, conformance_ctx: ProviderContext, fault: str) -> None:
        await _maybe_await(self.inject_fault(fault))
        creds = self.credentials("valid")
        with pytest.raises(MetricxError) as caught:
            await self._run_sync_steps(conformance_ctx, creds)
        error = caught.value
        assert isinstance(error, FAULTS[fault]), (
            f"fault {fault!r} must raise {FAULTS[fault].__name__}, got {type(error).__name__}: {error}"
        )
        if isinstance(error, RateLimited):
            assert error.retry_after_s > 0, "RateLimited must say when to retry (retry_after_s > 0)"
        for secret in (creds.access_token, creds.refresh_token):
            assert not secret or secret not in str(error), "an error message contains a token"

    # -- memory ---------------------------------------------------------------------------------------

    async def _peak_bytes(self, ctx: ProviderContext, account: AccountRef, days: int) -> tuple[int, int]:
        end = local_today(account.timezone, self.now()) - timedelta(days=1)
        window = SyncWindow(SyncMode.backfill, end - timedelta(days=days - 1), end, account.timezone)
        provider, creds = self.provider(), self.credentials("valid")
        gc.collect()
        tracemalloc.start()
        try:
            count = 0
            async for batch in provider.fetch_metrics(ctx, account, creds, window):
                assert len(batch) <= self.max_batch_size, f"a backfill batch of {len(batch)} records"
                count += len(batch)
                del batch
            return tracemalloc.get_traced_memory()[1], count
        finally:
            tracemalloc.stop()

    async def test_backfill_memory_does_not_grow_with_the_window(
        self, conformance_ctx: ProviderContext
    ) -> None:
        account = await self._localised(conformance_ctx, self.large_account())
        await self._peak_bytes(conformance_ctx, account, 3)  # warm caches and lazy imports
        short_peak, short_rows = await self._peak_bytes(conformance_ctx, account, self.short_backfill_days)
        long_peak, long_rows = await self._peak_bytes(conformance_ctx, account, self.long_backfill_days)
        assert long_rows >= 2 * short_rows > 0, (
            f"the large account must have history for {self.long_backfill_days} days "
            f"(rows: {short_rows} for {self.short_backfill_days} days, "
            f"{long_rows} for {self.long_backfill_days})"
        )
        ratio = long_peak / max(1, short_peak)
        if ratio >= self.memory_ratio_bound:
            # tracemalloc sees the whole process (an in-process simulator thread, a late collection):
            # measure again; a provider that collects the window grows both times.
            short_peak = min(
                short_peak, (await self._peak_bytes(conformance_ctx, account, self.short_backfill_days))[0]
            )
            long_peak = min(
                long_peak, (await self._peak_bytes(conformance_ctx, account, self.long_backfill_days))[0]
            )
            ratio = long_peak / max(1, short_peak)
        assert ratio < self.memory_ratio_bound, (
            f"peak memory grew {ratio:.2f}x from a {self.short_backfill_days}-day to a "
            f"{self.long_backfill_days}-day backfill ({short_peak} -> {long_peak} bytes): "
            "stream pages as batches instead of collecting the window"
        )
