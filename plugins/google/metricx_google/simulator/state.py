"""The simulator's mutable state: accounts, OAuth grants, switchable faults, clock and counters."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from metricx_google.simulator.world import Account

DEFAULT_CLIENT_ID = "sim-client-id"
DEFAULT_CLIENT_SECRET = "sim-client-secret"
DEFAULT_REFRESH_TOKEN = "1//sim-refresh-token"
MANAGER_ID = "1000000001"
CHILD_NY_ID = "1000000002"
CHILD_BERLIN_ID = "1000000003"
FAULT_KINDS = (
    "rate_limit",  # 429 quotaError RESOURCE_TEMPORARILY_EXHAUSTED with retryDelay
    "daily_quota",  # 429 quotaError RESOURCE_EXHAUSTED
    "server_error",  # 5xx internalError (status and code configurable)
    "broken_stream",  # searchStream body cut in the middle
    "slow",  # responses delayed by delay_s
    "malformed_rows",  # one metrics row with a costMicros that is not an integer
)


@dataclass
class Fault:
    """A fault that hits the next ``remaining`` API calls (searches and listAccessibleCustomers)."""

    kind: str
    remaining: int
    retry_delay_s: float | None = None
    status: int = 500
    code: str = "INTERNAL_ERROR"
    delay_s: float = 0.0
    customer_id: str | None = None


@dataclass
class Grant:
    """An issued access token."""

    refresh_token: str
    expires_at: float


def default_accounts() -> list[Account]:
    """A manager (Los Angeles, USD) with two clients: New York / USD and Berlin / EUR."""
    return [
        Account(MANAGER_ID, "Sim Manager", "America/Los_Angeles", "USD", manager=True, seed=1),
        Account(CHILD_NY_ID, "Sim Shop NY", "America/New_York", "USD", manager_id=MANAGER_ID, seed=2),
        Account(
            CHILD_BERLIN_ID,
            "Sim Shop Berlin",
            "Europe/Berlin",
            "EUR",
            manager_id=MANAGER_ID,
            seed=3,
            campaigns=4,
            ad_groups_per_campaign=3,
            ads_per_ad_group=4,
        ),
    ]


@dataclass
class SimState:
    """Everything the simulator remembers; ``reset()`` restores the defaults."""

    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = DEFAULT_CLIENT_SECRET
    token_lifetime_s: int = 3599
    min_version: int = 20
    accounts: dict[str, Account] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)
    faults: list[Fault] = field(default_factory=list)
    revision: int = 0
    frozen_now: datetime | None = None
    stats: Counter[str] = field(default_factory=Counter)
    with_defaults: bool = True

    def __post_init__(self) -> None:
        if self.with_defaults and not self.accounts:
            self.accounts = {a.customer_id: a for a in default_accounts()}

    def reset(self) -> None:
        """Back to the default accounts, no faults, no tokens, real clock, zero counters."""
        self.accounts = {a.customer_id: a for a in default_accounts()} if self.with_defaults else {}
        self.grants.clear()
        self.revoked.clear()
        self.faults.clear()
        self.revision = 0
        self.frozen_now = None
        self.stats.clear()
        self.token_lifetime_s = 3599

    def now(self) -> datetime:
        """The simulated wall clock (frozen by ``POST /_sim/clock``)."""
        return self.frozen_now or datetime.now(UTC)

    def add_account(self, spec: dict[str, Any]) -> Account:
        """Create an account from ``POST /_sim/accounts`` fields; ids are allocated when omitted."""
        data = dict(spec)
        customer_id = str(data.pop("customer_id", "") or self._next_id())
        if customer_id in self.accounts:
            raise ValueError(f"account {customer_id} exists")
        manager_id = data.get("manager_id")
        if manager_id is not None and not (manager_id in self.accounts and self.accounts[manager_id].manager):
            raise ValueError(f"manager_id {manager_id} is not a manager account")
        allowed = {"name", "time_zone", "currency_code", "manager", "manager_id", "status", "seed"}
        allowed |= {"campaigns", "ad_groups_per_campaign", "ads_per_ad_group"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown account fields: {sorted(unknown)}")
        data.setdefault("name", f"Sim account {customer_id}")
        data.setdefault("seed", int(customer_id) % 100_000)
        account = Account(customer_id=customer_id, **data)
        self.accounts[customer_id] = account
        return account

    def _next_id(self) -> str:
        return str(max([int(c) for c in self.accounts] + [2_000_000_000]) + 1)

    # -- OAuth ----------------------------------------------------------------------------------

    def mint(self, refresh_token: str) -> tuple[str, int]:
        """Issue an access token for ``refresh_token``."""
        token = "ya29.sim-" + secrets.token_urlsafe(24)
        self.grants[token] = Grant(refresh_token, time.time() + self.token_lifetime_s)
        self.stats["token_mints"] += 1
        return token, self.token_lifetime_s

    def check_access_token(self, token: str) -> str | None:
        """None when valid, else the authenticationError code."""
        grant = self.grants.get(token)
        if grant is None or grant.refresh_token in self.revoked:
            return "OAUTH_TOKEN_INVALID"
        if grant.expires_at <= time.time():
            return "OAUTH_TOKEN_EXPIRED"
        return None

    def expire_tokens(self) -> int:
        """Expire every issued access token now."""
        for grant in self.grants.values():
            grant.expires_at = time.time() - 1
        return len(self.grants)

    # -- faults ---------------------------------------------------------------------------------

    def take_fault(self, kinds: tuple[str, ...], customer_id: str | None) -> Fault | None:
        """Consume one use of the first armed fault of ``kinds`` that applies to ``customer_id``."""
        for fault in self.faults:
            if fault.kind in kinds and fault.remaining > 0:
                if fault.customer_id and fault.customer_id != customer_id:
                    continue
                fault.remaining -= 1
                self.stats[f"fault_{fault.kind}"] += 1
                return fault
        return None
