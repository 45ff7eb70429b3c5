"""An in-process provider for the benchmarks: no HTTP, a chosen latency per API call, N rows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from core import (
    AccountInfo,
    AccountRef,
    Capabilities,
    Credentials,
    EntityRecord,
    MetricRecord,
    ProviderContext,
    SyncWindow,
)


class BenchProvider:
    """``latency_s`` per API call (awaited, as a network call would be); ``ads`` ads of one campaign.

    Every call goes through the connection's limiter (``ctx.limiter.acquire``) as a
    real provider's calls do through ``core.http``.
    """

    name = "bench"
    display_name = "Bench"
    capabilities = Capabilities(
        levels=("campaign", "ad"),
        primary_level="ad",
        attribution_window_days=7,
        backfill_days=90,
        backfill_slice_days=30,
    )

    def __init__(self, latency_s: float = 0.0, ads: int = 1) -> None:
        self.latency_s = latency_s
        self.ads = ads
        self.calls = 0

    async def _call(self, ctx: ProviderContext) -> None:
        await ctx.limiter.acquire()
        self.calls += 1
        if self.latency_s:
            await asyncio.sleep(self.latency_s)

    def check_credentials(self, credentials: Credentials) -> None:
        from core import AuthError

        if not credentials.access_token:
            raise AuthError("no token")

    async def validate_token(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials
    ) -> Credentials | None:
        await self._call(ctx)
        return None

    async def fetch_account(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials
    ) -> AccountInfo:
        await self._call(ctx)
        return AccountInfo(name="bench", timezone="UTC", currency="USD")

    async def sync_entities(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials
    ) -> AsyncIterator[list[EntityRecord]]:
        await self._call(ctx)
        yield [EntityRecord(level="campaign", external_id="c1", name="campaign", status="ACTIVE")] + [
            EntityRecord(
                level="ad",
                external_id=f"a{i}",
                name=f"ad {i}",
                status="ACTIVE",
                parent_level="campaign",
                parent_external_id="c1",
            )
            for i in range(self.ads)
        ]

    async def fetch_metrics(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials, window: SyncWindow
    ) -> AsyncIterator[list[MetricRecord]]:
        await self._call(ctx)
        days = (window.end - window.start).days + 1
        rows: list[MetricRecord] = []
        for d in range(days):
            day = window.start + timedelta(days=d)
            for i in range(self.ads):
                rows.append(
                    MetricRecord(
                        level="ad",
                        entity_external_id=f"a{i}",
                        metrics_date=day,
                        spend=i + d,
                        impressions=100 * i + d,
                        clicks=i,
                        conversions=0,
                        revenue=0,
                    )
                )
                if len(rows) >= 5000:
                    yield rows
                    rows = []
        if rows:
            yield rows


def install(provider: Any) -> None:
    """Register ``provider`` in this process's plugin registry (the worker's ctx uses it)."""
    from core.plugins import get_registry

    get_registry().providers[provider.name] = provider
