"""Simulated ad accounts: seeded entities and their deterministic daily numbers.

Every ad has fixed full-day numbers per date, derived from a hash of (seed, ad,
date), so any process computes the same values. What the API reports on top of
that depends on the simulator's clock:

- today's numbers grow with the time of day in the account's timezone;
- purchases of the last 28 days mature: they start at 55% of their final value
  and grow with the hours elapsed since the day began on the simulator clock
  (``POST /_sim/clock {"advance_s": N}`` lets them mature), reaching 100% at 28 days.

Higher levels are exact sums of their ads, and a day or object without delivery
has no numbers at all (no row).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

INACTIVE = frozenset({"DELETED", "ARCHIVED"})
MATURITY_DAYS = 28
_FIRST_MATURITY_PM = 550
_ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW", "VND", "CLP", "ISK", "HUF", "TWD"})
# CPM range in major currency units per 1000 impressions.
_CPM_MAJOR = {"JPY": (700, 2000), "INR": (150, 500), "KRW": (6000, 15000)}
_AOV_MAJOR = {"JPY": (3000, 20000), "INR": (800, 6000), "KRW": (30000, 200000)}
_LEVEL_PREFIX = {"campaign": "23", "adset": "24", "ad": "25"}


def currency_digits(currency: str) -> int:
    return 0 if currency.upper() in _ZERO_DECIMAL_CURRENCIES else 2


def _hash(*parts: object) -> tuple[int, int, int, int]:
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=16).digest()
    a, b, c, d = (int.from_bytes(digest[i : i + 4], "big") for i in range(0, 16, 4))
    return a, b, c, d


@dataclass(slots=True)
class Entity:
    """A campaign, ad set or ad (``level``), with its parents and delivery dates."""

    id: str
    level: str
    name: str
    status: str
    created: date
    campaign_id: str | None = None
    adset_id: str | None = None
    stopped: date | None = None
    updated: datetime | None = None

    @property
    def parent_id(self) -> str | None:
        return self.adset_id if self.level == "ad" else self.campaign_id if self.level == "adset" else None


@dataclass(frozen=True, slots=True)
class Numbers:
    """Reported totals in minor currency units (``spend``, ``revenue``) and counts."""

    impressions: int = 0
    clicks: int = 0
    spend: int = 0
    purchases: int = 0
    revenue: int = 0

    def __add__(self, other: Numbers) -> Numbers:
        return Numbers(
            self.impressions + other.impressions,
            self.clicks + other.clicks,
            self.spend + other.spend,
            self.purchases + other.purchases,
            self.revenue + other.revenue,
        )


@dataclass(slots=True)
class Account:
    """One ad account: settings, entities by level, and the ads under each entity."""

    id: str
    name: str
    timezone: str
    currency: str
    seed: int
    campaigns: list[Entity] = field(default_factory=list)
    adsets: list[Entity] = field(default_factory=list)
    ads: list[Entity] = field(default_factory=list)
    by_id: dict[str, Entity] = field(default_factory=dict)
    ads_under: dict[str, list[Entity]] = field(default_factory=dict)

    def add(self, entity: Entity) -> None:
        {"campaign": self.campaigns, "adset": self.adsets, "ad": self.ads}[entity.level].append(entity)
        self.by_id[entity.id] = entity
        if entity.level == "ad":
            for owner in (self.id, entity.campaign_id, entity.adset_id, entity.id):
                self.ads_under.setdefault(str(owner), []).append(entity)

    def level(self, level: str) -> list[Entity]:
        """Entities of ``level``; ``account`` is the account itself as a pseudo-entity."""
        if level == "account":
            return [Entity(self.id, "account", self.name, "ACTIVE", date.min)]
        return {"campaign": self.campaigns, "adset": self.adsets, "ad": self.ads}[level]

    def chain(self, entity: Entity) -> list[Entity]:
        """The entity and its ancestors, nearest first."""
        ids = [entity.id, entity.adset_id if entity.level == "ad" else None, entity.campaign_id]
        return [self.by_id[i] for i in dict.fromkeys(ids) if i and i in self.by_id]

    def effective_status(self, entity: Entity) -> str:
        """Meta's effective_status: removed parents propagate, then the own status, then parents' pauses."""
        if entity.level == "account":
            return "ACTIVE"
        chain = self.chain(entity)
        for item in chain:
            if item.status in INACTIVE:
                return item.status
        if entity.status != "ACTIVE":
            return entity.status
        for item in chain[1:]:
            if item.status == "PAUSED":
                return f"{item.level.upper()}_PAUSED"
        return "ACTIVE"

    def hidden(self, entity: Entity) -> bool:
        """Ad sets and ads of a deleted campaign: Meta no longer lists them (only by id, or in insights)."""
        campaign = self.by_id.get(entity.campaign_id or "")
        return entity.level != "campaign" and campaign is not None and campaign.status == "DELETED"

    def delivery_end(self, ad: Entity) -> date | None:
        stops = [item.stopped for item in self.chain(ad) if item.stopped]
        return min(stops) if stops else None

    def full_day(self, ad: Entity, day: date) -> Numbers | None:
        """The ad's final numbers for ``day``, or None when it did not deliver."""
        end = self.delivery_end(ad)
        if day < ad.created or (end is not None and day > end):
            return None
        h0, h1, h2, h3 = _hash(self.seed, ad.id, day.isoformat())
        if h0 % 10 == 0:
            return None
        scale = 10 ** currency_digits(self.currency)
        low, high = _CPM_MAJOR.get(self.currency.upper(), (5, 15))
        impressions = 200 + h1 % 4800
        clicks = impressions * (5 + h2 % 30) // 1000
        cpm_minor = low * scale + h3 % ((high - low) * scale + 1)
        purchases = clicks * (10 + (h0 >> 8) % 90) // 1000
        return Numbers(impressions, clicks, impressions * cpm_minor // 1000, purchases, 0)

    def order_value(self, ad: Entity) -> int:
        low, high = _AOV_MAJOR.get(self.currency.upper(), (20, 200))
        scale = 10 ** currency_digits(self.currency)
        spread = (high - low) * scale + 1
        return int(low * scale + _hash(self.seed, ad.id, "aov")[0] % spread)


def reported(account: Account, ad: Entity, day: date, now_local: datetime) -> Numbers | None:
    """What the API reports for one ad and day at ``now_local`` (the account's wall clock)."""
    today = now_local.date()
    if day > today:
        return None
    full = account.full_day(ad, day)
    if full is None:
        return None
    if day == today:
        seconds = now_local.hour * 3600 + now_local.minute * 60 + now_local.second
        so_far = (full.impressions, full.clicks, full.spend, full.purchases)
        full = Numbers(*(value * seconds // 86400 for value in so_far))
    if full.impressions == 0:
        return None
    purchases = full.purchases * maturity_pm(day, now_local) // 1000
    return Numbers(full.impressions, full.clicks, full.spend, purchases, purchases * account.order_value(ad))


def maturity_pm(day: date, now_local: datetime) -> int:
    """Per-mille of the final purchases reported for ``day``: grows for 28 days, then stays at 1000."""
    if (now_local.date() - day).days >= MATURITY_DAYS:
        return 1000
    start = datetime.combine(day, datetime.min.time(), tzinfo=now_local.tzinfo)
    minutes = int((now_local - start).total_seconds() // 60)
    gained = (1000 - _FIRST_MATURITY_PM) * minutes // (MATURITY_DAYS * 24 * 60)
    return min(1000, _FIRST_MATURITY_PM + gained)


def totals(account: Account, entity: Entity, day: date, now_local: datetime) -> Numbers | None:
    """The entity's reported totals for ``day`` (sum of its ads), or None without delivery."""
    total: Numbers | None = None
    for ad in account.ads_under.get(entity.id, []):
        numbers = reported(account, ad, day, now_local)
        if numbers is not None:
            total = numbers if total is None else total + numbers
    return total


# (modulus, remainder, status) in order: a deterministic mix of statuses per level.
_STATUS_PATTERN = {
    "campaign": ((5, 1, "PAUSED"), (9, 4, "ARCHIVED"), (11, 7, "DELETED")),
    "adset": ((6, 4, "PAUSED"),),
    "ad": ((7, 1, "PAUSED"), (11, 2, "DELETED"), (13, 3, "ARCHIVED")),
}


def _status_for(counter: int, level: str) -> str:
    for modulus, remainder, status in _STATUS_PATTERN[level]:
        if counter % modulus == remainder:
            return status
    return "ACTIVE"


def _entity(account: Account, level: str, counter: int, today: date, **parents: str) -> Entity:
    entity_id = f"{_LEVEL_PREFIX[level]}{account.id[-6:]:0>6}{counter:07d}"
    h = _hash(account.seed, entity_id, "dates")
    status = _status_for(counter, level)
    created = today - timedelta(days=400 + h[0] % 300)
    stopped = today - timedelta(days=1 + h[1] % 60) if status != "ACTIVE" else None
    name = f"{level.title()} {counter}"
    updated = datetime.combine(stopped or created, datetime.min.time())
    return Entity(entity_id, level, name, status, created, stopped=stopped, updated=updated, **parents)


def seed_account(
    account_id: str,
    *,
    campaigns: int = 3,
    adsets_per_campaign: int = 2,
    ads_per_adset: int = 3,
    timezone: str = "America/Los_Angeles",
    currency: str = "USD",
    seed: int = 1,
    name: str | None = None,
    today: date | None = None,
) -> Account:
    """A deterministic account; every status (paused, deleted, archived) appears once there are ~13 ads.

    ``today`` anchors creation and stop dates (removed and paused objects stopped
    delivering within the last 60 days); the simulator passes its clock's date.
    """
    account_id = account_id.removeprefix("act_")
    account = Account(account_id, name or f"Sim account {account_id}", timezone, currency.upper(), seed)
    today = today or date.today()
    counters = {"campaign": 0, "adset": 0, "ad": 0}

    def next_entity(level: str, **parents: str) -> Entity:
        counters[level] += 1
        entity = _entity(account, level, counters[level], today, **parents)
        account.add(entity)
        return entity

    for _ in range(campaigns):
        campaign = next_entity("campaign")
        for _ in range(adsets_per_campaign):
            adset = next_entity("adset", campaign_id=campaign.id)
            for _ in range(ads_per_adset):
                next_entity("ad", campaign_id=campaign.id, adset_id=adset.id)
    return account
