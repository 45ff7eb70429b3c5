"""The Google Ads provider: account facts, entity sync and daily metrics for the sync engine."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

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
    PayloadError,
    ProviderCache,
    ProviderContext,
    SyncMode,
    SyncWindow,
)
from metricx_google.auth import RECONNECT, AccessTokens, TokenCache
from metricx_google.client import GoogleAdsClient
from metricx_google.quota import DUE_SLACK_S, INTERVALS_S, OperationBudget
from metricx_google.reports import (
    CHILDREN_QUERY,
    CUSTOMER_QUERY,
    ENTITY_QUERIES,
    LEVELS,
    METRIC_LEVELS,
    Row,
    add_to_ad_groups,
    entity_record,
    metric_record,
    metrics_query,
)
from metricx_google.settings import GoogleSettings

log = structlog.get_logger(__name__)

# Google Ads API versions and their sunset (all requests fail from that day), from the sunset
# reminders https://developers.google.com/ads/blog/posts/2026/04/google-ads-api-v20-sunset-reminder,
# .../2026/06/google-ads-api-v21-sunset-reminder and .../2026/09/google-ads-api-v22-sunset-reminder.
# v26 (released 2026-10-14, the version https://developers.google.com/google-ads/api/docs/sunset-dates
# recommends starting with) has no published date yet; major versions live "around 12 months"
# (same page), so its tentative sunset is declared a little under a year after release: the daily
# lifecycle warning then starts in time even if Google publishes a slightly earlier date.
GOOGLE_ADS_API_SUNSETS = {
    "v20": date(2026, 6, 10),
    "v21": date(2026, 8, 5),
    "v22": date(2026, 10, 7),
    "v26": date(2027, 10, 6),
}
#: How often the token upkeep uses a connection's refresh token (https://developers.google.com/identity/
#: protocols/oauth2#expiration: a refresh token unused for six months stops working); a little under
#: a day, so a pass every 30 minutes uses it once a day.
REFRESH_TOKEN_USE_EVERY = timedelta(hours=23)
#: The version new installations speak (the settings default).
CURRENT_API_VERSION = "v26"


@dataclass(frozen=True, slots=True)
class ChildAccount:
    """A client account under a manager, as ``customer_client`` reports it."""

    customer_id: str
    name: str | None
    manager: bool
    status: str | None
    timezone: str | None
    currency: str | None
    hidden: bool = False

    @property
    def syncable(self) -> bool:
        """An enabled, visible client account (managers have no metrics; cancelled and hidden
        clients are reported, not synced)."""
        return not self.manager and not self.hidden and self.status in (None, "ENABLED")

    def describe(self) -> str:
        why = "manager" if self.manager else "hidden" if self.hidden else (self.status or "").lower()
        name = self.name or "unnamed"
        return f"{self.customer_id} ({name})" if self.syncable else f"{self.customer_id} ({name}, {why})"


class GoogleAdsProvider:
    """Google Ads over REST: campaigns, ad groups and ads, with daily metrics per account-local day.

    A connection's ``external_account_id`` is the client customer id; when it is
    reached through a manager, the connection's ``config["login_customer_id"]``
    holds the manager's id.
    """

    name = "google"
    display_name = "Google Ads"

    def __init__(self, settings: GoogleSettings | None = None) -> None:
        self.settings = settings or GoogleSettings()
        # What "now" is for the daily budget and pacing (tests drive it with the simulator's clock).
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.api_version = ApiVersion(
            self.settings.api_version, GOOGLE_ADS_API_SUNSETS.get(self.settings.api_version)
        )
        self.capabilities = Capabilities(
            levels=LEVELS,
            primary_level="campaign",  # the level that covers all spend (Performance Max has no ad groups)
            attribution_window_days=self.settings.attribution_window_days,
            backfill_days=self.settings.backfill_days,
            # Conversions keep arriving for the conversion window: 30 days by default (up to 90).
            revision_days=max(30, self.settings.attribution_window_days),
        )

    # -- plumbing -------------------------------------------------------------------------------

    def tokens(self, ctx: ProviderContext, account: AccountRef, credentials: Credentials) -> AccessTokens:
        """The shared access-token source for this connection."""
        self.check_credentials(credentials)
        assert credentials.refresh_token is not None
        return AccessTokens(
            ctx.http,
            self.settings,
            TokenCache(ctx.cache),
            connection_id=account.connection_id,
            refresh_token=credentials.refresh_token,
        )

    def client(self, ctx: ProviderContext, account: AccountRef, credentials: Credentials) -> GoogleAdsClient:
        """A REST client for ``account`` using the shared token cache, spending the token's budget."""
        tokens = self.tokens(ctx, account, credentials)
        return GoogleAdsClient(ctx, self.settings, account, tokens, self.budget(ctx))

    def budget(self, ctx: ProviderContext) -> OperationBudget:
        """The developer token's daily operation budget (shared by every worker through the cache)."""
        return OperationBudget(
            ctx.cache, self._developer_identity(), self.settings.daily_budget(), self.clock
        )

    def _developer_identity(self) -> str:
        developer = self.settings.developer_token
        return developer.get_secret_value() if developer else self.settings.client_id

    async def quota_status(self, cache: ProviderCache) -> list[dict[str, Any]]:
        """The developer token's operations today (``/v1/providers``, ``metricx status``)."""
        budget = OperationBudget(cache, self._developer_identity(), self.settings.daily_budget(), self.clock)
        state = await budget.state()
        return [
            {
                "name": "daily operations",
                "scope": f"developer token {state.token}",
                "access_level": self.settings.access_level,
                "limit": state.daily,
                "used": state.used,
                "remaining": state.remaining,
                "resets_in_s": round(state.resets_in_s),
                "realtime_interval_s": state.interval_s,
                "note": state.describe(),
            }
        ]

    async def realtime_pause(self, ctx: ProviderContext, account: AccountRef) -> str | None:
        """Skip this realtime tick while the developer token's pacing says this connection is not due
        (core.PacesRealtime); the reason names the budget and the interval in force."""
        budget = self.budget(ctx)
        await budget.note_connection(account.connection_id)
        state = await budget.state()
        if state.interval_s is None:
            return state.describe()
        last = await ctx.cache.get(f"realtime:{account.connection_id}")
        if last is None:
            return None
        waited = (self.clock() - datetime.fromisoformat(last)).total_seconds()
        if waited >= state.interval_s - DUE_SLACK_S:
            return None
        if state.interval_s == INTERVALS_S[0]:
            return None  # full cadence: every tick runs
        return f"{state.describe()}; last realtime sync {waited / 60:.0f} min ago"

    # -- Provider protocol ----------------------------------------------------------------------

    def throttle_scopes(self, account: AccountRef, credentials: Credentials) -> Mapping[str, str]:
        """The developer token (else the OAuth client's cloud project) from settings, and the customer."""
        project = self._developer_identity()
        scopes = {"account": account.external_account_id.strip().replace("-", "")}
        if project:
            scopes["developer"] = project
        return scopes

    def normalize_account_id(self, raw: str) -> str:
        """``100-000-0003`` (as the Google Ads UI shows it) and ``1000000003`` are one customer."""
        return raw.strip().replace("-", "")

    def check_credentials(self, credentials: Credentials) -> None:
        """Offline check: Google needs a refresh token (access tokens are minted from it)."""
        if not credentials.refresh_token:
            raise AuthError(f"Missing refresh token. {RECONNECT}")

    async def validate_token(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials
    ) -> Credentials | None:
        """Make sure an access token can be had (cached or minted); the refresh token never changes."""
        await self.tokens(ctx, account, credentials).get()
        return None

    def refresh_due(
        self, credentials: Credentials, *, last_refresh: datetime | None, now: datetime, horizon: datetime
    ) -> bool:
        """Daily: Google revokes a refresh token left unused (six months; seven days for an app in
        testing), and a daily use also finds a revoked one before the next sync does."""
        if not credentials.refresh_token:
            return False
        return last_refresh is None or now - last_refresh >= REFRESH_TOKEN_USE_EVERY

    async def refresh_credentials(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials
    ) -> Credentials | None:
        """Use the refresh token: mint an access token (shared with the syncs through the cache).
        The refresh token never changes, so nothing is stored."""
        await self.tokens(ctx, account, credentials).renew()
        return None

    async def fetch_account(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials
    ) -> AccountInfo:
        """Name, time zone and currency (re-read every ``account_refresh_s``); a manager account is
        refused with its children listed."""
        key = f"account:{account.connection_id}:{account.external_account_id}"
        cached = await ctx.cache.get(key) if self.settings.account_refresh_s else None
        if cached is not None:
            data = json.loads(cached)
            return AccountInfo(name=data["name"], timezone=data["timezone"], currency=data["currency"])
        info = await self._read_account(ctx, account, credentials)
        if self.settings.account_refresh_s:
            facts = {"name": info.name, "timezone": info.timezone, "currency": info.currency}
            await ctx.cache.set(key, json.dumps(facts), ttl_s=self.settings.account_refresh_s)
        return info

    async def _read_account(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials
    ) -> AccountInfo:
        client = self.client(ctx, account, credentials)
        batches = await client.search_stream(CUSTOMER_QUERY)
        rows = [row for batch in batches for row in batch]
        if not rows or not isinstance(rows[0].get("customer"), dict):
            raise PayloadError(f"Google Ads account {client.customer_id}: the customer query returned no row")
        customer: Row = rows[0]["customer"]
        if customer.get("manager") is True:
            children = await self.list_child_accounts(ctx, account, credentials)
            names = ", ".join(c.describe() for c in children if c.syncable)
            skipped = ", ".join(c.describe() for c in children if not c.syncable)
            raise ConfigError(
                f"Google Ads account {client.customer_id} is a manager account and has no metrics of its "
                f"own. Connect one of its client accounts instead ({names or 'none found'}) with "
                f"login_customer_id={client.customer_id}"
                + (f"; not syncable: {skipped}." if skipped else ".")
            )
        timezone, currency = customer.get("timeZone"), customer.get("currencyCode")
        if not isinstance(timezone, str) or not isinstance(currency, str):
            raise PayloadError(f"Google Ads account {client.customer_id}: time zone or currency missing")
        name = customer.get("descriptiveName")
        return AccountInfo(name=name if isinstance(name, str) else None, timezone=timezone, currency=currency)

    async def list_child_accounts(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials
    ) -> list[ChildAccount]:
        """Accounts directly under the manager ``account`` (``customer_client.level <= 1``, the manager
        itself excluded); hidden and cancelled ones are included and marked (``ChildAccount.syncable``)."""
        client = self.client(ctx, account, credentials)
        children: list[ChildAccount] = []
        for batch in await client.search_stream(CHILDREN_QUERY):
            for row in batch:
                cc = row.get("customerClient")
                if not isinstance(cc, dict) or str(cc.get("id")) == client.customer_id:
                    continue
                if str(cc.get("level", "1")) not in ("0", "1"):
                    continue  # a grandchild (the filter is in the query; kept here for older answers)
                children.append(
                    ChildAccount(
                        customer_id=str(cc.get("id")),
                        name=_opt(cc.get("descriptiveName")),
                        manager=cc.get("manager") is True,
                        status=_opt(cc.get("status")),
                        timezone=_opt(cc.get("timeZone")),
                        currency=_opt(cc.get("currencyCode")),
                        hidden=cc.get("hidden") is True,
                    )
                )
        return children

    async def sync_entities(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials
    ) -> AsyncIterator[list[EntityRecord]]:
        """Campaigns, then ad groups, then ads (enabled, paused and removed), one search page per batch;
        at most every ``entity_refresh_s`` (three operations each time)."""
        key = f"entities:{account.connection_id}:{account.external_account_id}"
        if self.settings.entity_refresh_s and await ctx.cache.get(key) is not None:
            return
        client = self.client(ctx, account, credentials)
        for level in LEVELS:
            count = 0
            async for rows in client.search(ENTITY_QUERIES[level]):
                if rows:
                    count += len(rows)
                    yield [entity_record(level, row) for row in rows]
            log.info("google_entities_synced", connection_id=account.connection_id, level=level, count=count)
        if self.settings.entity_refresh_s:
            await ctx.cache.set(key, self.clock().isoformat(), ttl_s=self.settings.entity_refresh_s)

    async def fetch_metrics(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials, window: SyncWindow
    ) -> AsyncIterator[list[MetricRecord]]:
        """Daily metrics, one searchStream slice of ``metrics_slice_days`` at a time: two queries per
        slice, ``campaign`` (every campaign type, Performance Max included) and ``ad_group_ad`` (the ad
        level, whose sums per ad group give the ad-group level)."""
        client = self.client(ctx, account, credentials)
        step = timedelta(days=self.settings.metrics_slice_days)
        start = window.start
        while start <= window.end:
            end = min(window.end, start + step - timedelta(days=1))
            for level in METRIC_LEVELS:
                groups: dict[tuple[str, date], MetricRecord] = {}
                async for rows in client.stream(metrics_query(level, start, end)):
                    records = [metric_record(level, row, account.currency) for row in rows]
                    del rows  # one batch in memory at a time (the next is parsed after this yield)
                    if records:
                        if level == "ad":
                            add_to_ad_groups(groups, records)
                        yield records
                    del records
                if groups:
                    yield list(groups.values())
            log.debug(
                "google_metrics_slice_fetched",
                connection_id=account.connection_id,
                start=start.isoformat(),
                end=end.isoformat(),
            )
            start = end + timedelta(days=1)
        if window.mode is SyncMode.realtime:
            # When this connection last fetched today's numbers: realtime pacing counts from here.
            await ctx.cache.set(
                f"realtime:{account.connection_id}", self.clock().isoformat(), ttl_s=2 * 86400
            )


def _opt(value: object) -> str | None:
    return str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
