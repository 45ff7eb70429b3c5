"""The simulated advertisers: accounts, their entities and deterministic daily numbers (the ground truth).

Every number derives from ``(account seed, ad group id ~ ad id, date)``, so any process
computes the same values. Ad groups are sums of their ads; campaigns are sums of their ads, except
Performance Max campaigns, which have no ad groups or ads in the API: their spend exists only at
campaign level (``ad_group`` / ``ad_group_ad`` return nothing for them), so an account's total is
the campaign level's sum, never the ad level's. An ad id is unique only within its ad group
(``adGroupAds/{ad_group_id}~{ad_id}``): with ``shared_ads`` the first ad of every ad group of a
campaign has the same ad id, each with its own numbers.
Conversions for a date keep growing until the date is 90 days old (in simulated
time: advancing the clock credits them); today's numbers grow with the account's local time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from zoneinfo import ZoneInfo

CENT = Decimal("0.01")
MICRO = Decimal("0.000001")
LAG_DAYS = 90
LEVELS = ("campaign", "ad_group", "ad")


@dataclass(frozen=True, slots=True)
class Entity:
    """A campaign, ad group or ad of a simulated account."""

    level: str
    id: str
    name: str | None
    status: str
    campaign_id: str
    ad_group_id: str | None = None
    channel: str = "SEARCH"

    @property
    def key(self) -> str:
        """The entity's unique key: the id, or for an ad ``{ad_group_id}~{ad_id}`` (Google's own)."""
        return f"{self.ad_group_id}~{self.id}" if self.level == "ad" else self.id


@dataclass
class Account:
    """A simulated Google Ads customer. ``manager_id`` is the manager it sits under, if any."""

    customer_id: str
    name: str
    time_zone: str = "America/New_York"
    currency_code: str = "USD"
    manager: bool = False
    manager_id: str | None = None
    status: str = "ENABLED"
    seed: int = 1
    campaigns: int = 3
    ad_groups_per_campaign: int = 2
    ads_per_ad_group: int = 3
    pmax_campaigns: int = 0
    shared_ads: bool = False
    hidden: bool = False
    status_overrides: dict[tuple[str, str], str] = field(default_factory=dict)
    _entities: dict[str, list[Entity]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not (self.customer_id.isdigit() and len(self.customer_id) == 10):
            raise ValueError("customer_id must be 10 digits")
        if not (0 <= self.campaigns < 1000 and 0 <= self.ad_groups_per_campaign < 100):
            raise ValueError("at most 999 campaigns and 99 ad groups per campaign")
        if not 0 <= self.ads_per_ad_group < 100:
            raise ValueError("at most 99 ads per ad group")
        if not 0 <= self.pmax_campaigns < 100 or self.campaigns + self.pmax_campaigns >= 1000:
            raise ValueError("at most 99 Performance Max campaigns, 999 campaigns in all")
        ZoneInfo(self.time_zone)

    def entities(self, level: str) -> list[Entity]:
        """Entities of ``level`` in id order, with status overrides applied."""
        if self._entities is None:
            self._entities = _generate(self)
        return self._entities[level]

    def set_status(self, level: str, entity_id: str, status: str) -> Entity:
        """Pause, enable or remove an entity (as a user would in the Google Ads UI)."""
        found = [e for e in self.entities(level) if entity_id in (e.id, e.key)]
        if not found:
            raise KeyError(f"no {level} {entity_id} in account {self.customer_id}")
        self.status_overrides[(level, found[0].key)] = status
        self._entities = None
        return next(e for e in self.entities(level) if e.key == found[0].key)

    def today(self, now: datetime) -> date:
        """The account's local date at ``now``."""
        return now.astimezone(ZoneInfo(self.time_zone)).date()

    def day_fraction(self, now: datetime) -> Decimal:
        """How much of the account's local day has passed at ``now`` (0..1, 6 decimals)."""
        local = now.astimezone(ZoneInfo(self.time_zone))
        seconds = local.hour * 3600 + local.minute * 60 + local.second
        return (Decimal(seconds) / Decimal(86400)).quantize(Decimal("0.000001"), ROUND_DOWN)


def _status(index: int, count: int, paused_at: int, removed_at: int) -> str:
    # The first entity of each parent always runs; a few later ones are paused or removed.
    if count > paused_at and index == paused_at:
        return "PAUSED"
    if count > removed_at and index == removed_at:
        return "REMOVED"
    if index and index % 10 == 7:
        return "PAUSED"
    return "REMOVED" if index and index % 10 == 8 else "ENABLED"


def _generate(account: Account) -> dict[str, list[Entity]]:
    cid = account.customer_id
    out: dict[str, list[Entity]] = {level: [] for level in LEVELS}
    for c in range(account.campaigns):
        camp_id = f"{cid}{c:03d}"
        status = _status(c, account.campaigns, 1, 2)
        status = account.status_overrides.get(("campaign", camp_id), status)
        out["campaign"].append(Entity("campaign", camp_id, f"Campaign {c + 1}", status, camp_id))
        for g in range(account.ad_groups_per_campaign):
            ag_id = f"{camp_id}{g:02d}"
            ag_status = account.status_overrides.get(("ad_group", ag_id), _status(g, 99, 3, 4))
            out["ad_group"].append(Entity("ad_group", ag_id, f"Ad group {c + 1}.{g + 1}", ag_status, camp_id))
            for a in range(account.ads_per_ad_group):
                # An ad id is unique only within its ad group: shared ads repeat the first group's id.
                ad_id = f"{camp_id}00{a:02d}" if account.shared_ads and a == 0 else f"{ag_id}{a:02d}"
                ad_status = account.status_overrides.get(
                    ("ad", f"{ag_id}~{ad_id}"), _status(a, account.ads_per_ad_group, 1, 2)
                )
                # Like real responsive search ads, some ads have no name.
                name = f"Ad {c + 1}.{g + 1}.{a + 1}" if a % 4 != 3 else None
                out["ad"].append(Entity("ad", ad_id, name, ad_status, camp_id, ag_id))
    for p in range(account.pmax_campaigns):
        # Performance Max: campaign only (no ad groups or ads in the API), ids after the others.
        camp_id = f"{cid}{account.campaigns + p:03d}"
        status = account.status_overrides.get(("campaign", camp_id), "ENABLED")
        out["campaign"].append(
            Entity("campaign", camp_id, f"PMax {p + 1}", status, camp_id, channel="PERFORMANCE_MAX")
        )
    return out


@dataclass(frozen=True, slots=True)
class DayNumbers:
    """One entity's numbers for one local day, as the API reports them right now."""

    impressions: int = 0
    clicks: int = 0
    cost_micros: int = 0
    conversions: Decimal = Decimal(0)
    conversions_value: Decimal = Decimal(0)

    def __add__(self, other: DayNumbers) -> DayNumbers:
        return DayNumbers(
            self.impressions + other.impressions,
            self.clicks + other.clicks,
            self.cost_micros + other.cost_micros,
            self.conversions + other.conversions,
            self.conversions_value + other.conversions_value,
        )

    @property
    def is_zero(self) -> bool:
        return not (self.impressions or self.clicks or self.cost_micros or self.conversions)


def _draws(seed: int, ad_id: str, day: date) -> list[int]:
    digest = hashlib.blake2b(f"{seed}|{ad_id}|{day.isoformat()}".encode(), digest_size=32).digest()
    return [int.from_bytes(digest[i : i + 4], "big") for i in range(0, 32, 4)]


def _matured(total: Decimal, age_days: int, step: Decimal = CENT) -> Decimal:
    """The part of ``total`` credited so far: grows with age (simulated time), complete at 90 days."""
    effective = age_days
    if effective >= LAG_DAYS:
        return total
    return (total * Decimal(effective + 1) / Decimal(effective + 3)).quantize(step, ROUND_DOWN)


def ad_day(account: Account, ad_key: str, day: date, now: datetime) -> DayNumbers:
    """The numbers of an ad (``ad_group~ad`` key) or a Performance Max campaign (``pmax:{id}``) for
    ``day`` as of ``now`` (zero for future days and non-delivery days)."""
    today = account.today(now)
    if day > today:
        return DayNumbers()
    r = _draws(account.seed, ad_key, day)
    if r[0] % 10 >= 8:  # about one day in five without delivery
        return DayNumbers()
    impressions = 100 + r[1] % 5000
    clicks = r[2] % (impressions // 12 + 1)
    cost_micros = clicks * (50_000 + r[3] % 2_000_000) + r[4] % 1_000_000
    # Fractional conversions with many decimals, as data-driven attribution credits them.
    conversions = Decimal(r[5] % (clicks * 1_000_000 + 1)) / 1_000_000
    value = (conversions * Decimal(10 + r[6] % 90) + Decimal(r[7] % 100) / 100).quantize(CENT)
    if conversions == 0:
        value = Decimal(0)
    age = (today - day).days
    if age < 3 and r[0] % 5 == 0:
        # Invalid clicks Google filters out within a few days: the cost of a recent day is revised down.
        cost_micros += r[7] % 700_000
    conversions, value = _matured(conversions, age, MICRO), _matured(value, age)
    if day == today:
        frac = account.day_fraction(now)
        impressions, clicks = int(impressions * frac), int(clicks * frac)
        cost_micros = int(cost_micros * frac)
        conversions = (conversions * frac).quantize(MICRO, ROUND_DOWN)
        value = (value * frac).quantize(CENT, ROUND_DOWN)
    return DayNumbers(impressions, clicks, cost_micros, conversions, value)


def days(since: date, until: date) -> list[date]:
    """Every date of the inclusive range."""
    return [since + timedelta(days=i) for i in range((until - since).days + 1)]


def truth(
    account: Account, level: str, since: date, until: date, now: datetime
) -> dict[tuple[str, date], DayNumbers]:
    """Ground truth: ``{(entity id, date): numbers}`` at ``level``, only non-zero rows, as the API reports."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}")
    out: dict[tuple[str, date], DayNumbers] = {}
    pmax = [c for c in account.entities("campaign") if c.channel == "PERFORMANCE_MAX"]
    for day in days(since, until):
        for ad in account.entities("ad"):
            numbers = ad_day(account, ad.key, day, now)
            if numbers.is_zero:
                continue
            key_id = {"ad": ad.key, "ad_group": ad.ad_group_id, "campaign": ad.campaign_id}[level]
            assert key_id is not None
            key = (key_id, day)
            out[key] = out[key] + numbers if key in out else numbers
        if level != "campaign":
            continue
        for campaign in pmax:
            numbers = ad_day(account, f"pmax:{campaign.id}", day, now)
            if not numbers.is_zero:
                out[(campaign.id, day)] = numbers
    return out
