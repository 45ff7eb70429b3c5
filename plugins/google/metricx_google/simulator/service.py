"""Run a parsed GAQL query against a simulated account and render Google Ads REST rows."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from metricx_google.simulator.gaql import Query, matches, render
from metricx_google.simulator.world import Account, DayNumbers, Entity, truth

Values = dict[str, Any]
Names = dict[str, str]


def _customer_values(account: Account) -> Values:
    return {
        "customer.id": account.customer_id,
        "customer.descriptive_name": account.name,
        "customer.currency_code": account.currency_code,
        "customer.time_zone": account.time_zone,
        "customer.manager": account.manager,
        "customer.status": account.status,
    }


def ancestors(account: Account, accounts: dict[str, Account]) -> list[str]:
    """The managers above ``account``, nearest first."""
    out: list[str] = []
    manager = account.manager_id
    while manager is not None and manager in accounts and manager not in out:
        out.append(manager)
        manager = accounts[manager].manager_id
    return out


def _client_rows(manager: Account, accounts: dict[str, Account]) -> list[tuple[Values, Names]]:
    """``customer_client`` from ``manager``: the whole hierarchy below it (itself at level 0), as
    Google returns it; a query filters ``customer_client.level <= 1`` for direct children."""
    members = [(manager, 0)]
    for account in accounts.values():
        chain = ancestors(account, accounts)
        if manager.customer_id in chain:
            members.append((account, chain.index(manager.customer_id) + 1))
    rows: list[tuple[Values, Names]] = []
    for account, level in members:
        values = {
            "customer_client.id": account.customer_id,
            "customer_client.client_customer": f"customers/{account.customer_id}",
            "customer_client.descriptive_name": account.name,
            "customer_client.currency_code": account.currency_code,
            "customer_client.time_zone": account.time_zone,
            "customer_client.manager": account.manager,
            "customer_client.status": account.status,
            "customer_client.level": level,
            "customer_client.hidden": account.hidden,
            **_customer_values(manager),
        }
        names = {
            "customer_client": f"customers/{manager.customer_id}/customerClients/{account.customer_id}",
            "customer": f"customers/{manager.customer_id}",
        }
        rows.append((values, names))
    return rows


class _Index:
    """Entity values of one account, keyed by level and id."""

    def __init__(self, account: Account) -> None:
        self.account = account
        self.prefix = f"customers/{account.customer_id}"
        self.campaigns = {e.id: e for e in account.entities("campaign")}
        self.ad_groups = {e.id: e for e in account.entities("ad_group")}
        self.ads = {e.key: e for e in account.entities("ad")}

    def values(self, level: str, entity: Entity) -> tuple[Values, Names]:
        values = _customer_values(self.account)
        names: Names = {"customer": self.prefix}
        campaign = self.campaigns[entity.campaign_id]
        values |= {
            "campaign.id": campaign.id,
            "campaign.name": campaign.name,
            "campaign.status": campaign.status,
            "campaign.advertising_channel_type": campaign.channel,
            "campaign.resource_name": f"{self.prefix}/campaigns/{campaign.id}",
        }
        names["campaign"] = values["campaign.resource_name"]
        ad_group_id = entity.id if level == "ad_group" else entity.ad_group_id
        if ad_group_id is not None:
            group = self.ad_groups[ad_group_id]
            values |= {
                "ad_group.id": group.id,
                "ad_group.name": group.name,
                "ad_group.status": group.status,
                "ad_group.campaign": names["campaign"],
                "ad_group.resource_name": f"{self.prefix}/adGroups/{group.id}",
            }
            names["ad_group"] = values["ad_group.resource_name"]
        if level == "ad":
            values |= {
                "ad_group_ad.status": entity.status,
                "ad_group_ad.ad.id": entity.id,
                "ad_group_ad.ad.name": entity.name,
                "ad_group_ad.ad.type": "RESPONSIVE_SEARCH_AD",
                "ad_group_ad.ad_group": names["ad_group"],
                "ad_group_ad.resource_name": f"{self.prefix}/adGroupAds/{ad_group_id}~{entity.id}",
            }
            names["ad_group_ad"] = values["ad_group_ad.resource_name"]
            names["ad_group_ad.ad"] = f"{self.prefix}/ads/{entity.id}"
        return values, names

    def entity(self, level: str, entity_id: str) -> Entity:
        return {"campaign": self.campaigns, "ad_group": self.ad_groups, "ad": self.ads}[level][entity_id]


_LEVEL_OF = {"campaign": "campaign", "ad_group": "ad_group", "ad_group_ad": "ad"}


def _metric_values(numbers: DayNumbers) -> Values:
    return {
        "metrics.impressions": numbers.impressions,
        "metrics.clicks": numbers.clicks,
        "metrics.cost_micros": numbers.cost_micros,
        # Doubles, as Google sends them: JSON numbers.
        "metrics.conversions": float(numbers.conversions),
        "metrics.conversions_value": float(numbers.conversions_value),
    }


def _entity_rows(query: Query, account: Account) -> list[tuple[Values, Names]]:
    index = _Index(account)
    level = _LEVEL_OF[query.resource]
    return [index.values(level, e) for e in account.entities(level)]


def _metric_rows(query: Query, account: Account, now: datetime) -> list[tuple[Values, Names]]:
    index = _Index(account)
    level = _LEVEL_OF[query.resource]
    span = query.date_range()
    if span is None:
        return []
    since, until = span
    numbers = truth(account, level, since, min(until, account.today(now)), now)
    if not query.segmented_by_date:
        summed: dict[tuple[str, date | None], DayNumbers] = {}
        for (entity_id, _day), n in numbers.items():
            key = (entity_id, None)
            summed[key] = summed[key] + n if key in summed else n
        items: list[tuple[tuple[str, date | None], DayNumbers]] = sorted(
            summed.items(), key=lambda kv: kv[0][0]
        )
    else:
        items = sorted(numbers.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    rows: list[tuple[Values, Names]] = []
    for (entity_id, day), n in items:
        values, names = index.values(level, index.entity(level, entity_id))
        values |= _metric_values(n)
        if day is not None:
            values["segments.date"] = day.isoformat()
        rows.append((values, names))
    return rows


def execute(
    query: Query, account: Account, accounts: dict[str, Account], now: datetime
) -> list[dict[str, Any]]:
    """All result rows of ``query`` for ``account`` (zero-metric rows omitted), rendered as JSON objects."""
    if query.resource == "customer":
        candidates = [(_customer_values(account), {"customer": f"customers/{account.customer_id}"})]
    elif query.resource == "customer_client":
        candidates = _client_rows(account, accounts)
    elif query.metrics:
        candidates = _metric_rows(query, account, now)
    else:
        candidates = _entity_rows(query, account)
    rows = [render(query, values, names) for values, names in candidates if matches(query, values)]
    return rows[: query.limit] if query.limit else rows


def corrupt_first_metric_row(rows: list[dict[str, Any]]) -> bool:
    """Make one row malformed (cost that is not an integer); False when no row has metrics."""
    for row in rows:
        metrics = row.get("metrics")
        if isinstance(metrics, dict):
            metrics["costMicros"] = "12.5e"
            metrics["impressions"] = "n/a"
            return True
    return False
