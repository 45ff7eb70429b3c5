"""Ground truth: the exact per-day, per-entity totals the simulated API reports right now."""

from __future__ import annotations

from datetime import date, timedelta
from typing import TypedDict

from metricx_meta.simulator.data import totals
from metricx_meta.simulator.query import clicks_all, money
from metricx_meta.simulator.state import SimState


class TruthRow(TypedDict):
    """One entity-day: spend and revenue as decimal strings in major units, counts as ints."""

    level: str
    entity_id: str
    date: str
    spend: str
    impressions: int
    clicks: int  # link clicks (inline_link_clicks, Ads Manager's "Link clicks")
    clicks_all: int  # Meta's ``clicks``: "Clicks (all)"
    conversions: int
    revenue: str


def truth(state: SimState, account_id: str, level: str, since: date, until: date) -> list[TruthRow]:
    """Every row the insights API reports for ``level`` over ``since..until``, removed objects included.

    Values depend on the simulator clock, exactly like the API's:
    compare against a fetch made at the same simulated time.
    """
    account = state.accounts[account_id.removeprefix("act_")]
    now_local = state.local_now(account)
    rows: list[TruthRow] = []
    for offset in range((until - since).days + 1):
        day = since + timedelta(days=offset)
        for entity in sorted(account.level(level), key=lambda e: e.id):
            numbers = totals(account, entity, day, now_local)
            if numbers is None:
                continue
            rows.append(
                TruthRow(
                    level=level,
                    entity_id=entity.id,
                    date=day.isoformat(),
                    spend=money(numbers.spend, account.currency),
                    impressions=numbers.impressions,
                    clicks=numbers.clicks,
                    clicks_all=clicks_all(numbers),
                    conversions=numbers.purchases,
                    revenue=money(numbers.revenue, account.currency),
                )
            )
    return rows
