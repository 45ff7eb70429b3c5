"""Entity sync: campaigns, ad sets and ads, parents first, including paused and removed ones."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from core import EntityRecord, ProviderCache
from metricx_meta.client import MetaClient

# The effective_status values each edge accepts in `filtering`. Deleted and archived
# objects are hidden unless asked for explicitly, and each edge rejects values of other levels.
_COMMON = ("ACTIVE", "PAUSED", "DELETED", "ARCHIVED", "IN_PROCESS", "WITH_ISSUES")
STATUSES: dict[str, tuple[str, ...]] = {
    "campaign": _COMMON,
    "adset": (*_COMMON, "CAMPAIGN_PAUSED"),
    "ad": (
        *_COMMON,
        "CAMPAIGN_PAUSED",
        "ADSET_PAUSED",
        "DISAPPROVED",
        "PENDING_REVIEW",
        "PREAPPROVED",
        "PENDING_BILLING_INFO",
    ),
}


@dataclass(frozen=True, slots=True)
class Edge:
    """How one level is read: its Graph edge, fields and parent."""

    level: str
    edge: str
    fields: str
    parent_level: str | None
    parent_field: str | None


_BASE_FIELDS = "id,name,status,effective_status,created_time,updated_time"
EDGES = (
    Edge("campaign", "campaigns", f"{_BASE_FIELDS},objective,daily_budget,lifetime_budget", None, None),
    Edge(
        "adset",
        "adsets",
        f"{_BASE_FIELDS},campaign_id,daily_budget,lifetime_budget",
        "campaign",
        "campaign_id",
    ),
    Edge("ad", "ads", f"{_BASE_FIELDS},campaign_id,adset_id,creative{{id}}", "adset", "adset_id"),
)


def status_filter(field: str, level: str) -> str:
    """A `filtering` value that asks for every status of ``level``, deleted and archived included."""
    return json.dumps([{"field": field, "operator": "IN", "value": list(STATUSES[level])}])


def to_entity(edge: Edge, row: dict[str, Any]) -> EntityRecord:
    """One Graph object as an EntityRecord; ``effective_status`` says why an object does not deliver."""
    parent = row.get(edge.parent_field) if edge.parent_field else None
    return EntityRecord(
        level=edge.level,
        external_id=row.get("id"),  # type: ignore[arg-type]  # validated by the record
        name=row.get("name"),
        status=row.get("effective_status") or row.get("status"),
        parent_level=edge.parent_level if parent else None,
        parent_external_id=parent,
        raw=row,
    )


# How far back insights are asked for the ids of a deleted campaign's children (Meta keeps 37 months).
HIDDEN_CHILDREN_PRESET = "last_90d"
_IDS_PER_CALL = 50  # Graph's ?ids= takes up to 50 ids


# Deleted objects do not change: their recovered rows are kept this long per connection.
HIDDEN_CHILDREN_CACHE_S = 6 * 3600


async def iter_entities(
    client: MetaClient, account_id: str, cache: ProviderCache | None = None, connection_id: str = ""
) -> AsyncIterator[list[EntityRecord]]:
    """Yield one batch per page: every campaign, then every ad set, then every ad; then the ad sets
    and ads of deleted campaigns, which Meta no longer lists (:func:`hidden_children`, whose rows
    are cached per connection for ``HIDDEN_CHILDREN_CACHE_S``: deleted objects do not change)."""
    seen: set[str] = set()
    deleted: list[str] = []
    for edge in EDGES:
        params: dict[str, str | int] = {
            "fields": edge.fields,
            "filtering": status_filter("effective_status", edge.level),
            "limit": client.settings.page_size,
        }
        async for page in client.pages(f"act_{account_id}/{edge.edge}", params):
            records = [to_entity(edge, row) for row in page]
            seen.update(r.external_id for r in records)
            deleted += [r.external_id for r in records if r.level == "campaign" and r.status == "DELETED"]
            yield records
    if not deleted:
        return
    digest = hashlib.sha256(",".join(sorted(deleted)).encode()).hexdigest()[:16]
    key = f"hidden-children:{connection_id}:{account_id}:{digest}"
    cached = await cache.get(key) if cache is not None else None
    if cached is not None:
        rows: dict[str, list[dict[str, Any]]] = json.loads(cached)
        for edge in EDGES[1:]:
            records = [to_entity(edge, row) for row in rows.get(edge.level, []) if row.get("id") not in seen]
            if records:
                yield records
        return
    found: dict[str, list[dict[str, Any]]] = {"adset": [], "ad": []}
    async for batch in hidden_children(client, account_id, deleted, seen):
        for record in batch:
            found[record.level].append(dict(record.raw or {}))
        yield batch
    if cache is not None:
        await cache.set(key, json.dumps(found), ttl_s=HIDDEN_CHILDREN_CACHE_S)


async def hidden_children(
    client: MetaClient, account_id: str, campaigns: list[str], seen: set[str]
) -> AsyncIterator[list[EntityRecord]]:
    """The ad sets and ads of deleted ``campaigns`` that the edges left out, read by id.

    Their ids come from the insights rows of those campaigns (``adset_id`` / ``ad_id``, one
    aggregated row per ad over ``HIDDEN_CHILDREN_PRESET``); ``GET /?ids=`` then reads each object,
    so they get their names and parents instead of becoming nameless placeholders.
    """
    filters = json.loads(status_filter("ad.effective_status", "ad"))
    filters.append({"field": "campaign.id", "operator": "IN", "value": campaigns})
    params: dict[str, str | int] = {
        "level": "ad",
        "fields": "campaign_id,adset_id,ad_id",
        "date_preset": HIDDEN_CHILDREN_PRESET,
        "filtering": json.dumps(filters),
        "limit": client.settings.page_size,
    }
    missing: dict[str, list[str]] = {"adset": [], "ad": []}
    async for page in client.pages(f"act_{account_id}/insights", params):
        for row in page:
            for level in ("adset", "ad"):
                object_id = str(row.get(f"{level}_id") or "")
                if object_id and object_id not in seen:
                    seen.add(object_id)
                    missing[level].append(object_id)
    for edge in EDGES[1:]:  # ad sets before ads: parents first
        ids = missing[edge.level]
        for start in range(0, len(ids), _IDS_PER_CALL):
            chunk = ids[start : start + _IDS_PER_CALL]
            body = await client.get("", {"ids": ",".join(chunk), "fields": edge.fields})
            yield [to_entity(edge, body[i]) for i in chunk if isinstance(body.get(i), dict)]
