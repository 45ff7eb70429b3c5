"""MetaProvider: the Provider protocol for Meta (Facebook / Instagram) ad accounts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import UTC, date, datetime

import structlog

from core import (
    AccountInfo,
    AccountRef,
    ApiVersion,
    AuthError,
    Capabilities,
    ConfigError,
    Credentials,
    EntityRecord,
    MetricRecord,
    MetricxError,
    ProviderContext,
    SyncMode,
    SyncWindow,
)
from metricx_meta.client import MetaClient
from metricx_meta.entities import iter_entities
from metricx_meta.insights import fetch_range
from metricx_meta.reports import fetch_backfill
from metricx_meta.settings import MetaSettings

log = structlog.get_logger(__name__)

ACCOUNT_FIELDS = "account_id,name,currency,timezone_name,timezone_offset_hours_utc,account_status"
_ACTIVE_ACCOUNT = 1
# Marketing API versions and the day each stops working ("Expiration Date"), from
# https://developers.facebook.com/documentation/ads-commerce/marketing-api/marketing-api-changelog/versions
# (read 2026-12-02; fixtures/versions.json). Marketing versions expire sooner than the same Graph
# versions (Graph v25.0 runs to 2028-07-29, Marketing v25.0 only to 2027-02-23): the Marketing dates
# count. v26.0 (2026-07-29) and v27.0 (2026-11-04) have no published date yet.
MARKETING_API_SUNSETS = {
    "v27.0": None,
    "v26.0": None,
    "v25.0": date(2027, 2, 23),
    "v24.0": date(2026, 11, 10),
    "v23.0": date(2026, 6, 9),
}


def account_number(account: AccountRef) -> str:
    """The numeric ad account id (connections may store it with or without ``act_``)."""
    number = account.external_account_id.strip().removeprefix("act_")
    if not number.isdigit():
        raise ConfigError(f"Meta ad account id must be digits (optionally act_<digits>), got {number[:40]!r}")
    return number


class MetaProvider:
    """Syncs campaigns, ad sets, ads and their daily insights from the Marketing API."""

    name = "meta"
    display_name = "Meta Ads"
    capabilities = Capabilities(
        levels=("campaign", "adset", "ad"),
        primary_level="campaign",  # the level that covers all spend: totals and the metrics default
        attribution_window_days=7,  # nightly tier; the weekly deep tier re-reads days 8..28
        backfill_days=90,
        revision_days=28,  # Meta revises conversions for up to 28 days (its longest attribution window)
    )

    def __init__(self, settings: MetaSettings | None = None) -> None:
        self.settings = settings or MetaSettings()
        self.api_version = ApiVersion(
            self.settings.api_version, MARKETING_API_SUNSETS.get(self.settings.api_version)
        )

    def client(self, ctx: ProviderContext, credentials: Credentials) -> MetaClient:
        self.check_credentials(credentials)
        assert credentials.access_token is not None  # checked above
        return MetaClient(ctx.http, self.settings, credentials.access_token)

    def throttle_scopes(self, account: AccountRef, credentials: Credentials) -> Mapping[str, str]:
        """The app (operator setting, never tenant input) and the account's numeric id."""
        scopes = {"account": account.external_account_id.strip().removeprefix("act_")}
        if self.settings.app_id:
            scopes["app"] = self.settings.app_id
        return scopes

    def normalize_account_id(self, raw: str) -> str:
        """``act_1001`` and ``1001`` are one ad account: stored as the bare number."""
        value = raw.strip()
        return value[4:] if value.lower().startswith("act_") else value

    def check_credentials(self, credentials: Credentials) -> None:
        """Raise AuthError when there is no token or it expired (Meta tokens cannot be refreshed)."""
        if not credentials.access_token:
            raise AuthError("No Meta access token is stored: reconnect the Meta account.")
        expires_at = credentials.expires_at
        if expires_at is not None:
            if expires_at.tzinfo is None:
                expires_at = expires_at.replace(tzinfo=UTC)
            if expires_at <= datetime.now(UTC):
                raise AuthError(
                    f"The Meta access token expired at {expires_at.isoformat()}: reconnect the Meta account."
                )

    async def validate_token(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials
    ) -> Credentials | None:
        """Ask Meta who the token belongs to; 190 raises AuthError. Meta has no refresh: returns None."""
        await self.client(ctx, credentials).get("me", {"fields": "id"})
        return None

    async def fetch_account(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials
    ) -> AccountInfo:
        """Read the ad account's name, IANA timezone (the insights day boundary) and currency."""
        number = account_number(account)
        body = await self.client(ctx, credentials).get(f"act_{number}", {"fields": ACCOUNT_FIELDS})
        timezone, currency = body.get("timezone_name"), body.get("currency")
        if not timezone or not currency:
            raise ConfigError(f"Meta ad account {number} did not report its timezone and currency")
        if body.get("account_status") not in (None, _ACTIVE_ACCOUNT):
            log.warning(
                "meta_account_not_active", account_id=number, account_status=body.get("account_status")
            )
        return AccountInfo(name=body.get("name"), timezone=str(timezone), currency=str(currency))

    async def sync_entities(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials
    ) -> AsyncIterator[list[EntityRecord]]:
        """Yield campaigns, then ad sets, then ads, page by page, paused/deleted/archived included."""
        client = self.client(ctx, credentials)
        try:
            number = account_number(account)
            async for batch in iter_entities(client, number, ctx.cache, account.connection_id):
                yield batch
        except MetricxError as exc:
            raise client.scrub(exc) from None

    async def fetch_metrics(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials, window: SyncWindow
    ) -> AsyncIterator[list[MetricRecord]]:
        """Yield daily rows of every level for ``window`` (account days), one batch per page.

        Backfill windows use async report runs of ``backfill_slice_days``; attribution windows
        longer than that (the weekly deep tier's days 8..28) one async run per level for the whole
        window; the nightly recent days and realtime windows (today, yesterday) paged GETs.
        """
        client = self.client(ctx, credentials)
        number = account_number(account)
        levels = self.capabilities.levels
        log.info("meta_fetch_metrics", account_id=number, window=str(window))
        try:
            days = (window.end - window.start).days + 1
            deep = window.mode == SyncMode.attribution and days > self.settings.backfill_slice_days
            if window.mode == SyncMode.backfill or deep:
                whole = days if deep else None
                async for batch in fetch_backfill(client, number, levels, window.start, window.end, whole):
                    yield batch
                return
            for level in levels:
                async for batch in fetch_range(client, number, level, window.start, window.end):
                    yield batch
        except MetricxError as exc:
            raise client.scrub(exc) from None
