"""The Provider protocol and the records a provider yields to the sync engine.

A provider never touches the database or Redis. The core hands it a
:class:`ProviderContext` (the HTTP layer, a rate limiter and a cache), the account it
syncs (:class:`AccountRef`) and decrypted :class:`Credentials`; it yields
batches of :class:`EntityRecord` / :class:`MetricRecord` that the engine
upserts. Records validate themselves: a malformed value raises
:class:`~core.errors.PayloadError` with a message naming the field.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from core.errors import PayloadError

if TYPE_CHECKING:
    from core.cache import ProviderCache
    from core.http import ProviderHTTP
    from core.ratelimit import AccountLimiter


class SyncMode(enum.StrEnum):
    """What a sync fetches: today, the re-pull window, or the history."""

    realtime = "realtime"
    attribution = "attribution"
    backfill = "backfill"


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a provider can do; the engine derives windows from it.

    ``levels`` has no default: each provider names its own (core knows no platform's hierarchy).
    ``total_level`` is the level whose rows cover all of the account's spend (and sales), the one
    workspace totals read (default: the first level); totals never sum across levels, and a finer
    level may miss spend (Google's Performance Max campaigns have no ad groups). ``kind`` says what
    the numbers are: ``"ads"`` (spend and the revenue the platform attributes to it) or ``"store"``
    (a shop's sales in ``revenue``, no spend), which workspace totals put beside ad spend (MER).
    """

    levels: tuple[str, ...]
    attribution_window_days: int = 7
    backfill_days: int = 90
    backfill_slice_days: int = 7
    timezone_source: str = "account"
    realtime: bool = True
    # The level whose rows add up to the account's totals: what the metrics API shows when no
    # level is asked for. None: the first level (declare it; list order is not a meaning).
    primary_level: str | None = None
    # How many days back the platform still revises numbers (late conversions, refunds): the
    # nightly attribution re-reads the most recent ``attribution_window_days``, and a weekly deep
    # tier re-reads the rest up to this horizon. Equal to the nightly window: no deep tier.
    revision_days: int = 7
    # "store" marks a shop's sales (shown beside ad spend, e.g. MER); "ads" an ad platform.
    kind: Literal["ads", "store"] = "ads"

    def __post_init__(self) -> None:
        if self.primary_level is not None and self.primary_level not in self.levels:
            raise ValueError(f"primary_level {self.primary_level!r} is not one of the levels {self.levels}")

    @property
    def default_level(self) -> str:
        """The level the metrics API reads when none is given: ``primary_level``, else the first."""
        return self.primary_level or self.levels[0]


@dataclass(frozen=True, slots=True)
class ApiVersion:
    """The platform API version a provider speaks and the day the platform retires it.

    ``sunset`` is the first day requests to ``version`` fail (None while the platform has
    published no date). A provider declares it as its ``api_version`` attribute; operators see
    it in ``metricx plugins``, ``/v1/providers`` and ``/v1/ready``, and are warned daily from
    60 days before the sunset (see :mod:`core.lifecycle`).
    """

    version: str
    sunset: date | None = None

    def days_left(self, today: date) -> int | None:
        """Days from ``today`` to the sunset (negative once past), or None without a date."""
        return None if self.sunset is None else (self.sunset - today).days

    def is_sunset(self, today: date) -> bool:
        """True from the sunset day on: the platform refuses this version."""
        return self.sunset is not None and today >= self.sunset


@dataclass(frozen=True, slots=True)
class SyncWindow:
    """An inclusive range of the account's local days to fetch.

    ``captured_at`` is the snapshot time the engine writes for ``end`` when the
    window is today's realtime slot; past days are written at their fixed
    end-of-day time.
    """

    mode: SyncMode
    start: date
    end: date
    timezone: str

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def dates(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]

    def __str__(self) -> str:
        return f"{self.mode.value}:{self.start.isoformat()}..{self.end.isoformat()}"


@dataclass(slots=True)
class Credentials:
    """Decrypted tokens for one connection. Tokens never appear in ``repr``."""

    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: datetime | None = None
    scopes: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (
            f"Credentials(access_token={'***' if self.access_token else None}, "
            f"refresh_token={'***' if self.refresh_token else None}, expires_at={self.expires_at!r})"
        )


@dataclass(frozen=True, slots=True)
class AccountRef:
    """The account a provider syncs: ids and the settings stored on the connection."""

    connection_id: str
    workspace_id: str
    external_account_id: str
    timezone: str = "UTC"
    currency: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """Account facts a provider reads from the platform (timezone drives the day boundaries)."""

    name: str | None
    timezone: str
    currency: str


def _text(value: object, name: str, *, required: bool = True) -> str | None:
    if value is None or value == "":
        if required:
            raise PayloadError(f"record field {name!r} is missing")
        return None
    if isinstance(value, (str, int)):
        return str(value)
    raise PayloadError(f"record field {name!r} must be text, got {type(value).__name__}")


def _count(value: object, name: str) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise PayloadError(f"record field {name!r} must be a whole number, got a boolean")
    try:
        number = int(value) if isinstance(value, (int, str)) else int(Decimal(str(value)))
    except (ValueError, InvalidOperation):
        raise PayloadError(f"record field {name!r} must be a whole number, got {str(value)[:40]!r}") from None
    if number < 0:
        raise PayloadError(f"record field {name!r} must not be negative, got {number}")
    return number


def _money(value: object, name: str) -> Decimal:
    if value is None or value == "":
        return Decimal(0)
    if isinstance(value, float):
        value = repr(value)
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise PayloadError(f"record field {name!r} must be a number, got {str(value)[:40]!r}") from None
    if not number.is_finite():
        raise PayloadError(f"record field {name!r} must be a finite number, got {value!r}")
    return number


EXTRA_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_EXTRA = 16


def _extra(values: Mapping[str, object]) -> dict[str, Decimal]:
    if len(values) > MAX_EXTRA:
        raise PayloadError(f"record field 'extra' holds {len(values)} metrics; at most {MAX_EXTRA}")
    out: dict[str, Decimal] = {}
    for name, value in values.items():
        if not isinstance(name, str) or not EXTRA_NAME.match(name):
            raise PayloadError(f"record field 'extra' has an invalid metric name {str(name)[:40]!r}")
        out[name] = _money(value, f"extra.{name}")
    return out


def _day(value: object, name: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            pass
    raise PayloadError(f"record field {name!r} must be a date (YYYY-MM-DD), got {str(value)[:40]!r}")


@dataclass(slots=True)
class EntityRecord:
    """One campaign / ad set / ad (or a provider's own level), as the platform reports it now."""

    level: str
    external_id: str
    name: str | None = None
    status: str | None = None
    parent_level: str | None = None
    parent_external_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.level = _text(self.level, "level") or ""
        self.external_id = _text(self.external_id, "external_id") or ""
        self.name = _text(self.name, "name", required=False)
        self.status = _text(self.status, "status", required=False)
        self.parent_external_id = _text(self.parent_external_id, "parent_external_id", required=False)
        if self.parent_external_id and not self.parent_level:
            raise PayloadError(f"entity {self.external_id}: parent_external_id given without parent_level")


@dataclass(slots=True)
class MetricRecord:
    """The cumulative totals of one entity for one account-local day ("day so far" for today).

    Accepts loose input (strings from JSON, Decimals, ints) and normalises it:
    counts become ``int``, money and conversions ``Decimal``. Malformed values
    raise :class:`PayloadError`.
    """

    level: str
    entity_external_id: str
    metrics_date: date
    spend: Decimal = Decimal(0)
    impressions: int = 0
    clicks: int = 0
    conversions: Decimal = Decimal(0)
    revenue: Decimal = Decimal(0)
    currency: str | None = None
    #: The platform's own daily totals beside the five above, by name (``[a-z][a-z0-9_]*``, at most
    #: 16): kept with the snapshot and summed per name by the metrics API (e.g. Meta's
    #: ``clicks_all``, "Clicks (all)", where ``clicks`` is its link clicks). Cumulative like the rest.
    extra: Mapping[str, object] | None = None

    def __post_init__(self) -> None:
        self.level = _text(self.level, "level") or ""
        self.entity_external_id = _text(self.entity_external_id, "entity_external_id") or ""
        self.metrics_date = _day(self.metrics_date, "metrics_date")
        self.spend = _money(self.spend, "spend")
        self.impressions = _count(self.impressions, "impressions")
        self.clicks = _count(self.clicks, "clicks")
        self.conversions = _money(self.conversions, "conversions")
        self.revenue = _money(self.revenue, "revenue")
        self.extra = _extra(self.extra) if self.extra else None

    def extra_json(self) -> str | None:
        """``extra`` as a JSON object of exact numbers (how it is stored), or None."""
        if not self.extra:
            return None
        return "{" + ",".join(f"{json.dumps(name)}:{value}" for name, value in self.extra.items()) + "}"


@dataclass(slots=True)
class CoverageReport:
    """What a provider tells the core about the days of the window it is fetching.

    ``unavailable_before(day, reason)``: the platform cannot show this account the days before
    ``day`` (Shopify without ``read_all_orders``: only the last 60 days of orders). The engine
    records those days of the window as *unavailable* with ``reason`` instead of fetched: the
    coverage API lists them as not available, the metrics API names them, and neither the
    reconciler nor a backfill fetches them again. Write no metric row for them (no row is not a zero).
    """

    before: date | None = None
    reason: str | None = None

    def unavailable_before(self, day: date, reason: str) -> None:
        """Days before ``day`` cannot be read (the latest call of a fetch wins)."""
        self.before, self.reason = day, reason

    def take(self) -> tuple[date | None, str | None]:
        """The report of the fetch that just ended, cleared for the next window."""
        found = (self.before, self.reason)
        self.before = self.reason = None
        return found


@dataclass(slots=True)
class ProviderContext:
    """What the core lends a provider for one account: build it with ``core.provider_context``.

    ``http`` sends every call (limiter, error mapping, usage, retries: see ``core.http``);
    ``limiter`` is the account's shared rate limiter that ``http`` acquires; ``cache`` is the
    provider's namespaced, optionally encrypted cache (``core.cache``); ``credentials`` reads and
    writes the stored credentials of the connection (None while a connection is being created):
    a provider whose refresh token rotates stores each new pair before using it; ``coverage``
    takes what a metrics fetch reports about days it cannot read (:class:`CoverageReport`).
    """

    http: ProviderHTTP
    limiter: AccountLimiter
    cache: ProviderCache
    credentials: CredentialStore | None = None
    coverage: CoverageReport = field(default_factory=CoverageReport)


class CredentialStore(Protocol):
    """The stored (encrypted) credentials of one connection, for providers that rotate them."""

    async def load(self) -> Credentials:
        """The credentials as stored now (another worker may have rotated them)."""
        ...

    async def save(self, credentials: Credentials) -> None:
        """Store ``credentials`` (every token encrypted) in one statement."""
        ...


class Provider(Protocol):
    """What a platform plugin implements. See ``core/hookspecs.py`` for how it is registered.

    Every method may raise the errors in :mod:`core.errors`; anything else is
    reported as a permanent error with the exception's message.

    Optional attribute: ``api_version`` (an :class:`ApiVersion`), the platform API version the
    provider speaks; read it with :func:`core.lifecycle.api_version_of`, which gives a provider
    without one an "undeclared" version.
    """

    name: str
    display_name: str
    capabilities: Capabilities

    def check_credentials(self, credentials: Credentials) -> None:
        """Offline token check (no network): raise AuthError if the tokens cannot work.

        Decide from the tokens and ``expires_at`` against now only: the fan-out skips the
        check (and the decryption) while a connection's stored tokens are unchanged and
        its expiry has not passed since the check last passed.
        """
        ...

    async def validate_token(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials
    ) -> Credentials | None:
        """Check the token against the platform; return new credentials when refreshed, else None."""
        ...

    async def fetch_account(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials
    ) -> AccountInfo:
        """Read the account's name, IANA timezone and currency."""
        ...

    def sync_entities(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials
    ) -> AsyncIterator[list[EntityRecord]]:
        """Yield batches of entities, parents before children, including paused and removed ones."""
        ...

    def fetch_metrics(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials, window: SyncWindow
    ) -> AsyncIterator[list[MetricRecord]]:
        """Yield batches of daily metric records for every day of ``window`` at every level."""
        ...


JobFunction = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class JobSpec:
    """An extra arq job a plugin registers; ``name`` must be unique across all plugins."""

    name: str
    function: JobFunction
    max_tries: int | None = None
    timeout_s: int | None = None


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    """A cron entry the scheduler enqueues: ``job`` is a registered job name; times are UTC."""

    name: str
    cron: str
    job: str
    description: str = ""
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DemoConnection:
    """A connection ``metricx demo`` creates against a provider's simulator.

    ``role``: "normal"; "reconnect" (its token is refused, to show reconnect_required);
    "throttled" (the demo throttles it, to show a rate-limit deferral).
    """

    external_account_id: str
    name: str
    credentials: Credentials
    config: Mapping[str, Any] = field(default_factory=dict)
    role: str = "normal"


@dataclass(frozen=True, slots=True)
class SimulatorSpec:
    """How to run a provider's simulator for the demo.

    ``module`` is served with ``python -m {module} --host H --port P`` and speaks the
    shared control protocol (``core.testing.sim_app``), so the demo drives every
    simulator the same way: ``POST /_sim/clock`` lets time pass (late conversions
    arrive), ``POST /_sim/faults`` throttles an account. ``worker_env(url)`` gives the
    settings that point the provider at it; ``demo_connections(url)`` the connections
    to create; ``args`` are further options the demo serves it with (e.g. a faster quota than
    the tests about pacing use).
    """

    provider: str
    module: str
    worker_env: Callable[[str], Mapping[str, str]]
    demo_connections: Callable[[str], Sequence[DemoConnection]]
    args: Sequence[str] = ()


@runtime_checkable
class PacesRealtime(Protocol):
    """A provider that may skip a realtime tick for one connection (optional; see core/HOOKS.md)."""

    async def realtime_pause(self, ctx: ProviderContext, account: AccountRef) -> str | None:
        """None to sync this realtime tick; else why it is skipped (shown on the connection).

        Asked only for a realtime sync whose windows are all today (a tick that closes yesterday
        always runs), after the token check and before any metrics call.
        """
        ...


@runtime_checkable
class ReportsQuotas(Protocol):
    """A provider that reports the quotas it spends (optional; see core/HOOKS.md)."""

    async def quota_status(self, cache: ProviderCache) -> Sequence[Mapping[str, Any]]:
        """Each quota's state right now, e.g. ``{"name", "scope", "limit", "used", "resets_in_s",
        "note"}`` (no secrets: a token by its digest); shown by ``/v1/providers`` and ``metricx status``."""
        ...


@runtime_checkable
class RefreshesCredentials(Protocol):
    """A provider whose credentials need upkeep between syncs (optional; see core/HOOKS.md).

    The scheduled token upkeep (:mod:`core.upkeep`) asks :meth:`refresh_due` of every connection
    that is not deleted or waiting for a reconnect, paused ones included, and calls
    :meth:`refresh_credentials` when it says so.
    """

    def refresh_due(
        self, credentials: Credentials, *, last_refresh: datetime | None, now: datetime, horizon: datetime
    ) -> bool:
        """True when the credentials should be refreshed (or their refresh token used) now: the
        access token expires before ``horizon`` (after the next upkeep pass), or the platform
        revokes refresh tokens left unused (refresh at least daily). ``last_refresh`` is the last
        upkeep refresh (None: never). Offline: no network."""
        ...

    async def refresh_credentials(
        self, ctx: ProviderContext, account: AccountRef, credentials: Credentials
    ) -> Credentials | None:
        """Refresh now: new credentials stored through ``ctx.credentials`` (rotating refresh tokens
        under the provider's per-credential lock) or returned for the core to store; None when
        nothing is left to store. AuthError: the platform refused (the connection needs a reconnect)."""
        ...
