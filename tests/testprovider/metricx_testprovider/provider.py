"""The test provider: talks HTTP to its simulator at the connection's ``config["base_url"]``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from core import (
    AccountInfo,
    AccountRef,
    ApiVersion,
    AuthError,
    Capabilities,
    Credentials,
    EntityRecord,
    MetricRecord,
    MetricxError,
    ProviderAPI,
    ProviderContext,
    RateLimited,
    RetryPolicy,
    SyncWindow,
    TransientError,
    parse_retry_after,
)


class TestAPI(ProviderAPI):
    """The test API's errors. No in-request retries unless the connection's config asks for them
    (``http_retries``): the engine's job retries are what most core tests exercise."""

    name = "test API"

    def __init__(self, retries: int = 0) -> None:
        self.policy = RetryPolicy(transient_retries=retries, backoff_s=0.0, throttle_retries=0)

    def classify(self, response: httpx.Response) -> MetricxError | None:
        if response.status_code == 401:
            return AuthError("The test account's token expired. Please reconnect.")
        if response.status_code == 429:
            return RateLimited("test API throttled", parse_retry_after(response, 60.0))
        if response.status_code >= 500:
            return TransientError(f"test API answered {response.status_code}")
        return None


class TestProvider:
    name = "testprovider"
    display_name = "Test provider"
    capabilities = Capabilities(
        levels=("campaign", "ad"),
        # Its simulator reports ad rows (campaign rows only when switched on): ad covers all spend.
        primary_level="ad",
        attribution_window_days=7,
        backfill_days=90,
        backfill_slice_days=30,
    )
    api_version = ApiVersion("v1", None)  # the simulator's only version; it publishes no sunset

    def check_credentials(self, credentials: Credentials) -> None:
        if not credentials.access_token:
            raise AuthError("No token configured. Please reconnect.")

    async def _get(
        self, ctx: ProviderContext, account: AccountRef, creds: Credentials, path: str, **params: Any
    ) -> Any:
        url = f"{account.config['base_url']}/accounts/{account.external_account_id}{path}"
        response = await ctx.http.get(
            TestAPI(int(account.config.get("http_retries", 0))),
            url,
            params=params,
            headers={"Authorization": f"Bearer {creds.access_token}"},
        )
        return response.json()

    async def validate_token(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials
    ) -> Credentials | None:
        await self._get(ctx, account, credentials, "")
        return None

    async def fetch_account(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials
    ) -> AccountInfo:
        body = await self._get(ctx, account, credentials, "")
        return AccountInfo(name=body["name"], timezone=body["timezone"], currency=body["currency"])

    async def sync_entities(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials
    ) -> AsyncIterator[list[EntityRecord]]:
        body = await self._get(ctx, account, credentials, "/entities")
        rows = body["data"]
        yield [
            EntityRecord(
                level=r["level"],
                external_id=r["id"],
                name=r["name"],
                status=r["status"],
                parent_level="campaign" if r.get("parent") else None,
                parent_external_id=r.get("parent"),
                raw=r,
            )
            for r in rows
        ]

    async def fetch_metrics(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials, window: SyncWindow
    ) -> AsyncIterator[list[MetricRecord]]:
        page: int | None = 0
        while page is not None:
            body = await self._get(
                ctx,
                account,
                credentials,
                "/metrics",
                since=window.start.isoformat(),
                until=window.end.isoformat(),
                page=page,
            )
            yield [
                MetricRecord(
                    level=r["level"],
                    entity_external_id=r["id"],
                    metrics_date=r["date"],
                    spend=r["spend"],
                    impressions=r["impressions"],
                    clicks=r["clicks"],
                    conversions=r["conversions"],
                    revenue=r["revenue"],
                )
                for r in body["data"]
            ]
            page = body["next"]
