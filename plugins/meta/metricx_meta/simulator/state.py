"""The simulator's mutable state: accounts, tokens, clock, faults, report runs, usage."""

from __future__ import annotations

import itertools
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from metricx_meta.simulator.data import Account, seed_account

DEFAULT_TOKEN = "sim-valid-token"
FAULT_KINDS = frozenset(
    {"throttle", "server_error", "delay", "malformed", "empty_body", "async", "reduce_data", "usage"}
)


def default_accounts(today: date) -> list[Account]:
    """The accounts a fresh simulator serves: three timezones and currencies."""
    return [
        seed_account("1001", timezone="America/Los_Angeles", currency="USD", seed=1, today=today),
        seed_account("1002", timezone="Asia/Tokyo", currency="JPY", seed=2, today=today),
        seed_account("1003", timezone="Asia/Kolkata", currency="INR", seed=3, today=today),
    ]


@dataclass(slots=True)
class Fault:
    """A switched-on failure. ``remaining`` None means until reset; filters narrow where it hits."""

    kind: str
    remaining: int | None = 1
    account: str | None = None
    path: str | None = None
    method: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Fault:
        body = dict(body)
        kind = str(body.pop("kind", ""))
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; use one of {sorted(FAULT_KINDS)}")
        count = body.pop("count", 1)
        account = body.pop("account", None)
        return cls(
            kind=kind,
            remaining=None if count is None else int(count),
            account=str(account).removeprefix("act_") if account else None,
            path=body.pop("path", None),
            method=body.pop("method", None),
            params=body,
        )

    def matches(self, kind: str, account: str | None, path: str, method: str) -> bool:
        return (
            self.kind == kind
            and (self.remaining is None or self.remaining > 0)
            and (self.account is None or self.account == account)
            and (self.path is None or self.path in path)
            and (self.method is None or self.method.upper() == method)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "remaining": self.remaining,
            "account": self.account,
            "path": self.path,
            "method": self.method,
            **self.params,
        }


@dataclass(slots=True)
class ReportRun:
    """An async insights job: its query, its fate and how often it was polled."""

    id: str
    account_id: str
    query: Any
    mode: str = "normal"
    polls: int = 0


class SimState:
    """Everything the simulator knows; tests may build one and read the ground truth from it."""

    def __init__(
        self, accounts: Callable[[date], list[Account]] | None = None, *, now: datetime | None = None
    ) -> None:
        """``accounts`` builds the accounts from the clock's date; ``now`` freezes the clock."""
        self._make_accounts = accounts or default_accounts
        self._initial_now = now
        self.reset()

    def reset(self) -> None:
        """Back to the start: default accounts and token, real clock, no faults, no runs."""
        self.frozen_now: datetime | None = None
        self.set_clock(now=self._initial_now)
        self.offset = timedelta()
        self.revision = 0
        self.tokens: dict[str, str] = {DEFAULT_TOKEN: "valid"}
        self.faults: list[Fault] = []
        self.runs: dict[str, ReportRun] = {}
        self.run_ids = itertools.count(6_000_000_000_000_001)
        self.calls: dict[str, deque[float]] = {}
        self.usage_per_call_pct = 0.01
        self.async_polls_to_complete = 1
        self.async_failure_rate = 0.0
        self.min_version = 24
        self.rng = random.Random(0)
        self.accounts = {account.id: account for account in self._make_accounts(self.now().date())}

    # --- clock -------------------------------------------------------------------------
    def now(self) -> datetime:
        """The simulator's UTC time: frozen when set via /_sim/clock, else the real time plus an offset."""
        return self.frozen_now if self.frozen_now is not None else datetime.now(UTC) + self.offset

    def local_now(self, account: Account) -> datetime:
        return self.now().astimezone(ZoneInfo(account.timezone))

    def set_clock(self, *, now: datetime | None = None, advance_s: float = 0.0, real: bool = False) -> None:
        if real:
            self.frozen_now, self.offset = None, timedelta()
        if now is not None:
            self.frozen_now = now if now.tzinfo else now.replace(tzinfo=UTC)
        if advance_s:
            if self.frozen_now is not None:
                self.frozen_now += timedelta(seconds=advance_s)
            else:
                self.offset += timedelta(seconds=advance_s)

    # --- accounts and tokens -----------------------------------------------------------
    def add_account(self, account: Account) -> Account:
        self.accounts[account.id] = account
        return account

    def token_state(self, token: str | None) -> str:
        return self.tokens.get(token or "", "invalid")

    # --- faults ------------------------------------------------------------------------
    def take_fault(self, kind: str, account: str | None, path: str, method: str) -> Fault | None:
        """The first matching fault, counted as used."""
        for fault in self.faults:
            if fault.matches(kind, account, path, method):
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault
        return None

    def peek_fault(self, kind: str, account: str | None, path: str, method: str) -> Fault | None:
        return next((f for f in self.faults if f.matches(kind, account, path, method)), None)

    # --- usage -------------------------------------------------------------------------
    def record_call(self, account: str) -> float:
        """Count one call against the account's hourly quota; return the usage percentage."""
        calls = self.calls.setdefault(account, deque())
        now = time.monotonic()
        calls.append(now)
        while calls and calls[0] < now - 3600:
            calls.popleft()
        return min(100.0, round(len(calls) * self.usage_per_call_pct, 2))

    def regain_minutes(self, account: str) -> int:
        calls = self.calls.get(account)
        if not calls:
            return 0
        return max(1, int((calls[0] + 3600 - time.monotonic()) // 60))

    # --- report runs -------------------------------------------------------------------
    def new_run(self, account_id: str, query: Any, mode: str) -> ReportRun:
        if mode == "normal" and self.async_failure_rate and self.rng.random() < self.async_failure_rate:
            mode = self.rng.choice(["failed", "skipped"])
        run = ReportRun(str(next(self.run_ids)), account_id, query, mode)
        self.runs[run.id] = run
        return run
