"""The base every provider simulator is built on: a clock, faults, a request log and ground truth.

A simulator subclasses :class:`Simulator` (its platform data, how it renders errors)
and serves :func:`core.testing.sim_app.simulator_app`, which adds the one control
protocol all simulators share (``/_sim/reset``, ``/_sim/faults``, ``/_sim/clock``,
``/_sim/requests``, ``/_sim/truth``; see core/HOOKS.md, "register_simulators").

Faults are the platform-neutral failures a provider must survive; each simulator
answers them in its platform's own shape (a Meta error envelope, a Google
``GoogleAdsFailure``, a Shopify 429 with ``Retry-After``):

===================  ====================================================================
kind                 what the next matching requests get
===================  ====================================================================
``throttle``         the platform's throttle answer at ``scope`` (account, app, token,
                     developer), telling the client to wait ``retry_after_s``
``server_error``     a 5xx (``status``, default 500) in the platform's shape
``timeout``          the answer only after ``seconds`` (a slow upstream)
``token_expired``    the access token is refused as expired
``token_revoked``    the access token (or refresh token) is refused as revoked
``malformed``        a body the client cannot trust: ``mode`` ``row`` (one bad value),
                     ``truncated`` (cut JSON) or ``empty``
``version_sunset``   the platform's answer to a sunset API ``version`` (all when omitted)
===================  ====================================================================

A simulator may accept kinds of its own (``extra_fault_kinds``). Every fault takes
``count`` (requests affected; ``null`` = until cleared), ``duration_s`` (active for that
much simulated time), and the filters ``account``, ``path`` (substring) and ``method``.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

FAULT_KINDS = frozenset(
    {
        "throttle",
        "server_error",
        "timeout",
        "token_expired",
        "token_revoked",
        "malformed",
        "version_sunset",
    }
)
THROTTLE_SCOPES = ("account", "app", "token", "developer")
MALFORMED_MODES = ("row", "truncated", "empty")
_FILTERS = ("kind", "count", "duration_s", "account", "path", "method")


FaultTest = Callable[["Fault"], bool]


class SimulatorError(ValueError):
    """A control request the simulator cannot follow (answered as HTTP 400 with its message)."""


class SimClock:
    """The simulator's UTC now: the real time plus an offset, or frozen at a moment.

    Advancing moves it forward either way, so data that depends on time (today's
    totals, conversions credited late, token lifetimes) follows it.
    """

    def __init__(self, now: datetime | None = None) -> None:
        self._initial = now
        self.reset()

    def reset(self) -> None:
        """Back to the moment given at construction (frozen), else to the real time."""
        self.frozen: datetime | None = _utc(self._initial) if self._initial else None
        self.offset = timedelta()

    def now(self) -> datetime:
        return self.frozen if self.frozen is not None else datetime.now(UTC) + self.offset

    def set(self, now: datetime) -> None:
        """Freeze the clock at ``now``."""
        self.frozen = _utc(now)

    def advance(self, seconds: float) -> None:
        if self.frozen is not None:
            self.frozen += timedelta(seconds=seconds)
        else:
            self.offset += timedelta(seconds=seconds)

    def run_real(self) -> None:
        """Unfreeze: real time again, without an offset."""
        self.frozen, self.offset = None, timedelta()

    def to_json(self) -> dict[str, Any]:
        return {"now": self.now().isoformat(), "frozen": self.frozen is not None}


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(slots=True)
class Fault:
    """One switched-on failure. ``remaining`` None = until cleared; ``until`` ends it in simulated time."""

    kind: str
    remaining: int | None = 1
    until: datetime | None = None
    account: str | None = None
    path: str | None = None
    method: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def active(self, now: datetime) -> bool:
        return (self.remaining is None or self.remaining > 0) and (self.until is None or now < self.until)

    def matches(self, kind: str, account: str | None, path: str, method: str) -> bool:
        return (
            self.kind == kind
            and (self.account is None or self.account == account)
            and (self.path is None or self.path in path)
            and (self.method is None or self.method.upper() == method.upper())
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "remaining": self.remaining,
            "until": self.until.isoformat() if self.until else None,
            "account": self.account,
            "path": self.path,
            "method": self.method,
            **self.params,
        }


@dataclass(slots=True)
class LoggedRequest:
    """One platform request the simulator answered (control requests are not logged)."""

    seq: int
    at: datetime
    method: str
    path: str
    query: str
    status: int
    account: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "account": self.account,
        }


class RequestLog:
    """The last ``size`` platform requests, numbered so a reader can ask for what came after ``seq``."""

    def __init__(self, size: int = 10_000) -> None:
        self._entries: deque[LoggedRequest] = deque(maxlen=size)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()

    def add(
        self, *, at: datetime, method: str, path: str, query: str, status: int, account: str | None
    ) -> None:
        with self._lock:
            self._entries.append(LoggedRequest(next(self._seq), at, method, path, query, status, account))

    def entries(self, *, after: int = 0, path: str | None = None) -> list[LoggedRequest]:
        with self._lock:
            return [e for e in self._entries if e.seq > after and (path is None or path in e.path)]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class Simulator:
    """State every simulator shares. Subclasses seed their data in :meth:`on_reset` and answer
    :meth:`truth`; they may react to time passing in :meth:`on_clock_advanced`."""

    extra_fault_kinds: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, *, now: datetime | None = None) -> None:
        """``now`` freezes the clock at that moment (also after a reset)."""
        self.clock = SimClock(now)
        self.faults: list[Fault] = []
        self.requests = RequestLog()
        self._fault_lock = threading.Lock()

    # --- the common operations ---------------------------------------------------------------
    def reset(self) -> None:
        """Back to the start: clock, no faults, empty request log, the platform's seed data."""
        self.clock.reset()
        self.faults.clear()
        self.requests.clear()
        self.on_reset()

    def now(self) -> datetime:
        """The simulated UTC time."""
        return self.clock.now()

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of simulated time pass (forward only)."""
        if seconds < 0:
            raise SimulatorError("the clock only moves forward")
        before = self.now()
        self.clock.advance(seconds)
        self.on_clock_advanced(before, self.now())

    def add_faults(self, specs: Iterable[Mapping[str, Any]]) -> list[Fault]:
        """Parse and arm faults (all or none: a bad spec arms nothing)."""
        parsed = [self.parse_fault(spec) for spec in specs]
        with self._fault_lock:
            self.faults.extend(parsed)
        return parsed

    def parse_fault(self, spec: Mapping[str, Any]) -> Fault:
        """A fault from its JSON form; raises :class:`SimulatorError` on an unknown kind or bad value."""
        if not isinstance(spec, Mapping):
            raise SimulatorError("a fault is a JSON object")
        kind = str(spec.get("kind", ""))
        kinds = FAULT_KINDS | self.extra_fault_kinds
        if kind not in kinds:
            raise SimulatorError(f"unknown fault kind {kind!r}; use one of {sorted(kinds)}")
        params = {k: v for k, v in spec.items() if k not in _FILTERS}
        _check_params(kind, params)
        try:
            count = spec.get("count", 1)
            duration = spec.get("duration_s")
            until = self.now() + timedelta(seconds=float(duration)) if duration is not None else None
            if duration is not None and "count" not in spec:
                count = None  # a duration alone means every request in that time
            return Fault(
                kind=kind,
                remaining=None if count is None else int(count),
                until=until,
                account=self.normalize_account(str(spec["account"])) if spec.get("account") else None,
                path=str(spec["path"]) if spec.get("path") else None,
                method=str(spec["method"]) if spec.get("method") else None,
                params=params,
            )
        except (TypeError, ValueError) as exc:
            raise SimulatorError(f"bad fault {dict(spec)}: {exc}") from None

    def take_fault(
        self, kind: str, account: str | None, path: str, method: str, when: FaultTest | None = None
    ) -> Fault | None:
        """The first active fault of ``kind`` for this request (and passing ``when``), counted as used."""
        with self._fault_lock:
            fault = self._find(kind, account, path, method, when)
            if fault is not None and fault.remaining is not None:
                fault.remaining -= 1
            return fault

    def peek_fault(
        self, kind: str, account: str | None, path: str, method: str, when: FaultTest | None = None
    ) -> Fault | None:
        """The fault :meth:`take_fault` would return, without using it up."""
        with self._fault_lock:
            return self._find(kind, account, path, method, when)

    def clear_faults(self) -> None:
        with self._fault_lock:
            self.faults.clear()

    def _find(
        self, kind: str, account: str | None, path: str, method: str, when: FaultTest | None
    ) -> Fault | None:
        now = self.now()
        for fault in self.faults:
            if (
                fault.active(now)
                and fault.matches(kind, account, path, method)
                and (when is None or when(fault))
            ):
                return fault
        return None

    # --- what a platform simulator fills in -------------------------------------------------
    def on_reset(self) -> None:
        """Re-seed the platform's data (called by :meth:`reset`)."""

    def on_clock_advanced(self, before: datetime, after: datetime) -> None:
        """React to simulated time passing (e.g. late refunds); data derived from ``now()`` needs nothing."""

    def normalize_account(self, account: str) -> str:
        """The account id as the simulator keys it (e.g. without Meta's ``act_`` prefix)."""
        return account

    def truth(self, params: Mapping[str, str]) -> Any:
        """Ground truth for ``GET /_sim/truth?...``: the exact numbers the platform reports now."""
        raise SimulatorError("this simulator serves no ground truth")


def _check_params(kind: str, params: Mapping[str, Any]) -> None:
    scope = params.get("scope")
    if kind == "throttle" and scope is not None and scope not in THROTTLE_SCOPES:
        raise SimulatorError(f"throttle scope must be one of {THROTTLE_SCOPES}")
    mode = params.get("mode")
    if kind == "malformed" and mode is not None and mode not in MALFORMED_MODES:
        raise SimulatorError(f"malformed mode must be one of {MALFORMED_MODES}")
