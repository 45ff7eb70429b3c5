"""The simulator's state on the shared base (clock, faults, request log): accounts, tokens, runs, usage."""

from __future__ import annotations

import itertools
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from core.testing.simulator import Simulator, SimulatorError
from metricx_meta.simulator.data import Account, seed_account

DEFAULT_TOKEN = "sim-valid-token"
APP_CALLS = "__app__"  # the key of the app-wide call count in SimState.calls
# Meta's own fault kinds, besides the shared ones (core.testing.simulator); see faults.py.
META_FAULT_KINDS = frozenset({"async", "reduce_data", "usage", "graph_error", "cursor_expired"})


def default_accounts(today: date) -> list[Account]:
    """The accounts a fresh simulator serves: three timezones and currencies."""
    return [
        seed_account("1001", timezone="America/Los_Angeles", currency="USD", seed=1, today=today),
        seed_account("1002", timezone="Asia/Tokyo", currency="JPY", seed=2, today=today),
        seed_account("1003", timezone="Asia/Kolkata", currency="INR", seed=3, today=today),
    ]


@dataclass(slots=True)
class ReportRun:
    """An async insights job: its query, its fate and how often it was polled."""

    id: str
    account_id: str
    query: Any
    mode: str = "normal"
    polls: int = 0
    error: dict[str, Any] | None = None  # v25+ failure fields (error_code, error_message, ...)


class SimState(Simulator):
    """Everything the simulator knows; tests may build one and read the ground truth from it."""

    extra_fault_kinds = META_FAULT_KINDS

    def __init__(
        self, accounts: Callable[[date], list[Account]] | None = None, *, now: datetime | None = None
    ) -> None:
        """``accounts`` builds the accounts from the clock's date; ``now`` freezes the clock."""
        super().__init__(now=now)
        self._make_accounts = accounts or default_accounts
        self.on_reset()

    def on_reset(self) -> None:
        """Default accounts and token, no report runs, no usage counted."""
        self.tokens: dict[str, str] = {DEFAULT_TOKEN: "valid"}
        self.runs: dict[str, ReportRun] = {}
        self.run_ids = itertools.count(6_000_000_000_000_001)
        self.calls: dict[str, deque[float]] = {}
        self.usage_per_call_pct = 0.01
        # The app's own quota, shared by every account of the app (X-App-Usage, code 4 at 100%);
        # 0 = not modelled (X-App-Usage then shows a quarter of the account's usage).
        self.app_usage_per_call_pct = 0.0
        self.async_polls_to_complete = 1
        self.async_failure_rate = 0.0
        self.min_version = 25  # Marketing API v24.0 expired on 2026-11-10
        self.max_version = 27  # the newest published version (v27.0, 2026-11-04); above: unknown
        self.app_secret: str | None = None  # set: every call needs appsecret_proof ("Require App Secret")
        self.rng = random.Random(0)
        self.accounts = {account.id: account for account in self._make_accounts(self.now().date())}

    def normalize_account(self, account: str) -> str:
        return account.removeprefix("act_")

    def truth(self, params: Mapping[str, str]) -> Any:
        """``?account=..&level=..&since=YYYY-MM-DD&until=YYYY-MM-DD``: what insights reports now."""
        from metricx_meta.simulator.truth import truth

        try:
            since, until = date.fromisoformat(params["since"]), date.fromisoformat(params["until"])
            rows = truth(self, params["account"], params.get("level", "ad"), since, until)
        except (KeyError, ValueError) as exc:
            raise SimulatorError(
                f"use ?account=..&level=..&since=YYYY-MM-DD&until=YYYY-MM-DD ({exc})"
            ) from None
        return {"rows": rows, "now": self.now().isoformat()}

    def local_now(self, account: Account) -> datetime:
        return self.now().astimezone(ZoneInfo(account.timezone))

    # --- accounts and tokens -----------------------------------------------------------
    def add_account(self, account: Account) -> Account:
        self.accounts[account.id] = account
        return account

    def token_state(self, token: str | None) -> str:
        return self.tokens.get(token or "", "invalid")

    # --- usage -------------------------------------------------------------------------
    def record_call(self, account: str, per_call_pct: float | None = None) -> float:
        """Count one call against the account's hourly quota; return the usage percentage."""
        calls = self.calls.setdefault(account, deque())
        now = time.monotonic()
        calls.append(now)
        while calls and calls[0] < now - 3600:
            calls.popleft()
        rate = self.usage_per_call_pct if per_call_pct is None else per_call_pct
        return min(100.0, round(len(calls) * rate, 2))

    def app_usage_pct(self) -> float | None:
        """The app's usage over every account (None when not modelled)."""
        if not self.app_usage_per_call_pct:
            return None
        return min(100.0, round(len(self.calls.get(APP_CALLS, ())) * self.app_usage_per_call_pct, 2))

    def regain_minutes(self, account: str) -> int:
        calls = self.calls.get(account)
        if not calls:
            return 0
        return max(1, int((calls[0] + 3600 - time.monotonic()) // 60))

    # --- report runs -------------------------------------------------------------------
    def new_run(
        self, account_id: str, query: Any, mode: str, error: dict[str, Any] | None = None
    ) -> ReportRun:
        if mode == "normal" and self.async_failure_rate and self.rng.random() < self.async_failure_rate:
            mode = self.rng.choice(["failed", "skipped"])
        run = ReportRun(str(next(self.run_ids)), account_id, query, mode, error=error)
        self.runs[run.id] = run
        return run
