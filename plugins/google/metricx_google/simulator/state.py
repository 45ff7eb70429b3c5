"""The simulator's state on the shared base (clock, faults, request log): accounts, OAuth grants, counters."""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from core.testing.simulator import Fault, FaultTest, Simulator
from metricx_google.simulator.world import Account

PACIFIC = ZoneInfo("America/Los_Angeles")
DEFAULT_CLIENT_ID = "sim-client-id"
DEFAULT_CLIENT_SECRET = "sim-client-secret"
DEFAULT_REFRESH_TOKEN = "1//sim-refresh-token"
MANAGER_ID = "1000000001"
CHILD_NY_ID = "1000000002"
CHILD_BERLIN_ID = "1000000003"


@dataclass
class Grant:
    """An issued access token; it expires in simulated time."""

    refresh_token: str
    expires_at: datetime


def default_accounts() -> list[Account]:
    """A manager (Los Angeles, USD) with two clients: New York / USD and Berlin / EUR."""
    return [
        Account(MANAGER_ID, "Sim Manager", "America/Los_Angeles", "USD", manager=True, seed=1),
        # One Performance Max campaign (spend at campaign level only) and ads sharing ids across groups.
        Account(
            CHILD_NY_ID,
            "Sim Shop NY",
            "America/New_York",
            "USD",
            manager_id=MANAGER_ID,
            seed=2,
            pmax_campaigns=1,
            shared_ads=True,
        ),
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


class SimState(Simulator):
    """Everything the simulator remembers; ``reset()`` restores the defaults."""

    def __init__(
        self,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        *,
        with_defaults: bool = True,
        now: datetime | None = None,
    ) -> None:
        """``with_defaults`` seeds the default manager and clients; ``now`` freezes the clock."""
        super().__init__(now=now)
        self.client_id, self.client_secret = client_id, client_secret
        self.with_defaults = with_defaults
        self.grants: dict[str, Grant] = {}
        self.revoked: set[str] = set()
        self.stats: Counter[str] = Counter()
        self.on_reset()

    def on_reset(self) -> None:
        """Back to the default accounts, no tokens, zero counters."""
        self.accounts = {a.customer_id: a for a in default_accounts()} if self.with_defaults else {}
        self.grants.clear()
        self.revoked.clear()
        self.stats.clear()
        self.token_lifetime_s = 3599
        # Google revokes a refresh token left unused for six months
        # (https://developers.google.com/identity/protocols/oauth2#expiration); tests scale it down.
        # None: never (the default).
        self.refresh_idle_s: int | None = None
        self.refresh_used: dict[str, datetime] = {}
        self.min_version = 20
        # Google's daily operations per developer token (None: unlimited, the default).
        self.daily_operations: int | None = None
        self.operations: Counter[tuple[str, str]] = Counter()

    def take_fault(
        self, kind: str, account: str | None, path: str, method: str, when: FaultTest | None = None
    ) -> Fault | None:
        """As the base does, and count each fault served in ``stats`` (``fault_{kind}``)."""
        fault = super().take_fault(kind, account, path, method, when)
        if fault is not None:
            self.stats[f"fault_{kind}"] += 1
        return fault

    def truth(self, params: Mapping[str, str]) -> Any:
        """``?customer=..&level=campaign|ad_group|ad&since=YYYY-MM-DD&until=YYYY-MM-DD``."""
        from metricx_google.simulator.control import truth_answer

        return truth_answer(self, params)

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
        allowed |= {
            "campaigns",
            "ad_groups_per_campaign",
            "ads_per_ad_group",
            "pmax_campaigns",
            "shared_ads",
            "hidden",
        }
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

    def spend_operation(self, developer_token: str) -> float | None:
        """Count one operation of ``developer_token`` today (Pacific); the seconds until the quota
        resets when the day's operations are already used up (then nothing is counted)."""
        local = self.now().astimezone(PACIFIC)
        key = (developer_token, local.date().isoformat())
        if self.daily_operations is not None and self.operations[key] >= self.daily_operations:
            self.stats["quota_exhausted"] += 1
            midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=PACIFIC)
            return max(1.0, (midnight - local).total_seconds())
        self.operations[key] += 1
        self.stats["operations"] += 1
        return None

    def operations_today(self, developer_token: str) -> int:
        """Operations ``developer_token`` has used today (Pacific)."""
        return self.operations[(developer_token, self.now().astimezone(PACIFIC).date().isoformat())]

    # -- OAuth ----------------------------------------------------------------------------------

    def idle_revoked(self, refresh_token: str) -> bool:
        """Revoke ``refresh_token`` if it was left unused longer than ``refresh_idle_s``."""
        last = self.refresh_used.get(refresh_token)
        if self.refresh_idle_s is None or last is None:
            return False
        if (self.now() - last).total_seconds() > self.refresh_idle_s:
            self.revoked.add(refresh_token)
            self.stats["idle_revocations"] += 1
            return True
        return False

    def mint(self, refresh_token: str) -> tuple[str, int]:
        """Issue an access token for ``refresh_token``."""
        self.refresh_used[refresh_token] = self.now()
        token = "ya29.sim-" + secrets.token_urlsafe(24)
        self.grants[token] = Grant(refresh_token, self.now() + timedelta(seconds=self.token_lifetime_s))
        self.stats["token_mints"] += 1
        return token, self.token_lifetime_s

    def check_access_token(self, token: str) -> str | None:
        """None when valid, else the authenticationError code."""
        grant = self.grants.get(token)
        if grant is None or grant.refresh_token in self.revoked:
            return "OAUTH_TOKEN_INVALID"
        if grant.expires_at <= self.now():
            return "OAUTH_TOKEN_EXPIRED"
        return None

    def expire_tokens(self) -> int:
        """Expire every issued access token now."""
        for grant in self.grants.values():
            grant.expires_at = self.now() - timedelta(seconds=1)
        return len(self.grants)
