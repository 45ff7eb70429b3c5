"""What the demo prints at the end: workspace totals from ``workspace_summary`` (the API's code), the
API's own answer beside them, copy-pasteable commands, and the demo's reusable API key."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import ApiKey
from core.services import create_api_key, hash_key
from core.services.summary import CurrencyTotals, WorkspaceSummary

#: The demo's API key, kept (mode 0600) in the data dir so a second run reuses it.
KEY_FILE = "api.key"
#: The totals the demo printed, as JSON, for scripts and the tests.
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class DemoKey:
    """The demo workspace's API key and whether this run reused it."""

    key: str
    reused: bool


async def demo_api_key(session: AsyncSession, workspace_id: uuid.UUID, data_dir: Path) -> DemoKey:
    """The key saved by an earlier run if it still works for this workspace, else a new one (saved)."""
    path = data_dir / KEY_FILE
    if path.exists():
        saved = path.read_text().strip()
        live = await session.scalar(
            select(ApiKey.id).where(
                ApiKey.key_hash == hash_key(saved),
                ApiKey.workspace_id == workspace_id,
                ApiKey.revoked_at.is_(None),
            )
        )
        if live is not None:
            return DemoKey(saved, reused=True)
    _, key = await create_api_key(session, workspace_id, "demo")
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(key)
    return DemoKey(key, reused=False)


def _money(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _ratio(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def totals_table(summary: WorkspaceSummary) -> Table:
    """One row per currency: ad spend, attributed revenue, ROAS, store revenue, MER."""
    table = Table("currency", "ad spend", "impressions", "clicks", "conversions", "ad revenue", "ROAS")
    table.add_column("store revenue")
    table.add_column("MER")
    rows: list[CurrencyTotals] = list(summary.currencies)
    rows += [summary.converted] if summary.converted else []
    for c in rows:
        table.add_row(
            f"{c.currency} (converted)" if c.converted else c.currency,
            _money(c.ads.spend),
            f"{c.ads.impressions:,}",
            f"{c.ads.clicks:,}",
            f"{c.ads.conversions:,.1f}",
            _money(c.ads.revenue),
            _ratio(c.roas),
            _money(c.store_revenue),
            _ratio(c.mer),
        )
    return table


def providers_table(summary: WorkspaceSummary) -> Table:
    """One row per provider and currency, at the provider's primary level."""
    table = Table("provider", "level", "currency", "spend", "revenue", "ROAS")
    for p in summary.providers:
        roas = _ratio(p.roas) if p.kind == "ads" else "(store sales)"
        table.add_row(p.provider, p.level, p.currency, _money(p.totals.spend), _money(p.totals.revenue), roas)
    return table


def summary_numbers(summary: WorkspaceSummary) -> dict[str, Any]:
    """The per-currency totals as JSON-ready strings, keyed like the API's ``currencies``."""
    return {
        c.currency: {
            "spend": str(c.ads.spend),
            "impressions": c.ads.impressions,
            "clicks": c.ads.clicks,
            "conversions": str(c.ads.conversions),
            "revenue": str(c.ads.revenue),
            "store_revenue": str(c.store_revenue),
        }
        for c in summary.currencies
    }


def api_numbers(body: dict[str, Any]) -> dict[str, Any]:
    """The same shape as :func:`summary_numbers`, from the API's JSON (numbers compared as decimals)."""
    return {
        c["currency"]: {
            "spend": str(Decimal(str(c["ads"]["spend"]))),
            "impressions": c["ads"]["impressions"],
            "clicks": c["ads"]["clicks"],
            "conversions": str(Decimal(str(c["ads"]["conversions"]))),
            "revenue": str(Decimal(str(c["ads"]["revenue"]))),
            "store_revenue": str(Decimal(str(c["store_revenue"]))),
        }
        for c in body["currencies"]
    }


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def norm(x: dict[str, Any]) -> dict[str, Any]:
        return {c: {k: Decimal(str(v)) for k, v in n.items()} for c, n in x.items()}

    return norm(a) == norm(b)


async def api_summary(api_url: str, key: str, workspace_id: uuid.UUID, since: date, until: date) -> Any:
    """``GET /v1/workspaces/{ws}/metrics/summary`` of the running API."""
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(
            f"{api_url}/v1/workspaces/{workspace_id}/metrics/summary",
            params={"since": since.isoformat(), "until": until.isoformat()},
            headers={"Authorization": f"Bearer {key}"},
        )
        response.raise_for_status()
        return response.json()


def print_totals(
    console: Console, summary: WorkspaceSummary, api_body: dict[str, Any], data_dir: Path
) -> bool:
    """Print the workspace totals and whether the API returned the same; save them as summary.json."""
    console.print(
        f"Workspace totals {summary.since} .. {summary.until} (each account's days, latest snapshot of "
        "each day, each provider at its primary level; currencies never mixed):"
    )
    console.print(totals_table(summary))
    console.print(providers_table(summary))
    ours, theirs = summary_numbers(summary), api_numbers(api_body)
    agree = _same(ours, theirs)
    if agree:
        console.print("  the API's /metrics/summary returns these same totals")
    else:
        console.print("  [red]the API's /metrics/summary differs[/red] (a sync wrote in between?)")
    (data_dir / SUMMARY_FILE).write_text(
        json.dumps(
            {"since": summary.since.isoformat(), "until": summary.until.isoformat(), "currencies": ours},
            indent=2,
        )
    )
    return agree


def _shown(url: str) -> str:
    """``url`` with any password replaced: the demo prints it, and a password never goes to a terminal."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":<password>@")
    return parts._replace(netloc=netloc).geturl()


def print_commands(console: Console, api_url: str, workspace_id: uuid.UUID, key: DemoKey, stack: Any) -> None:
    """Commands to copy: curl lines split with backslashes and never wrapped by the terminal."""
    say = console.print
    origin = urlsplit(api_url)
    say(f"\nDashboard: {api_url}/   (sign in at {api_url}/login with the API key below)")
    say(f"API: {api_url}/v1   (OpenAPI: {api_url}/docs)")
    how = "reused from" if key.reused else "saved to"
    say(f"API key for workspace {workspace_id} ({how} {stack.data_dir / KEY_FILE}):")
    say(f"  {key.key}", soft_wrap=True, highlight=False)
    say("Try:", highlight=False)
    base = f"{origin.scheme}://{origin.netloc}/v1/workspaces/{workspace_id}"
    for path in ("/connections", "/metrics/summary", "/metrics/summary?format=csv"):
        say(f"  curl -H 'Authorization: Bearer {key.key}' \\", soft_wrap=True, highlight=False)
        say(f"    '{base}{path}'", soft_wrap=True, highlight=False)
    say("Point the CLI at the demo's database (in another shell, while the demo runs):", highlight=False)
    say(
        f"  export DATABASE_URL='{_shown(stack.database_url)}' REDIS_URL='{_shown(stack.redis_url)}' "
        f"METRICX_DATA_DIR='{stack.data_dir.resolve()}'",
        soft_wrap=True,
        highlight=False,
    )
    say("  metricx connections list", soft_wrap=True, highlight=False)
