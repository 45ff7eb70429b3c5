"""Shopify bulk operations: the JSONL result, streamed line by line and reassembled by ``__parentId``.

A bulk query's result is one JSON object per line; the nodes of a nested connection (an order's
``lineItems``) are lines of their own carrying ``__parentId``, the GID of their parent. With
``groupObjects: true`` (https://shopify.dev/docs/api/admin-graphql/latest/mutations/bulkoperationrunquery)
they follow their parent, so an order is complete when the next root line (or the end) arrives:
:func:`reassemble` keeps only the current order in memory, whatever the file's size. A child line
whose parent is not the current order is refused (PayloadError) rather than silently dropped.

The simulator serves the operation's lifecycle and file (``simulator/bulk.py``). Not done yet
(issue 16 item 2): the client that runs and polls the operation (one per shop, ``partialDataUrl``,
re-polling for a fresh URL when it expired) and the backfill that uses it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any

from core import PayloadError, load_json

#: GID type of a child line -> the connection it fills on its parent, as the paginated query's ``nodes``.
ORDER_CHILDREN: Mapping[str, str] = {"LineItem": "lineItems"}


def gid_type(gid: object) -> str | None:
    """``gid://shopify/LineItem/9001`` -> ``LineItem``."""
    if not isinstance(gid, str) or not gid.startswith("gid://shopify/"):
        return None
    parts = gid.split("/")
    return parts[3] if len(parts) > 4 else None


async def reassemble(
    lines: AsyncIterable[str | bytes], children: Mapping[str, str] = ORDER_CHILDREN
) -> AsyncIterator[dict[str, Any]]:
    """Root objects of a grouped bulk JSONL stream, children under ``{field: {"nodes": [...]}}``."""
    current: dict[str, Any] | None = None
    members: dict[str, dict[str, Any]] = {}  # GIDs of the current root and its descendants
    number = 0
    async for raw in lines:
        number += 1
        text = raw.decode() if isinstance(raw, bytes) else raw
        if not text.strip():
            continue
        obj = load_json(text)
        if not isinstance(obj, dict):
            raise PayloadError(f"bulk JSONL line {number}: not a JSON object")
        parent = obj.pop("__parentId", None)
        if parent is None:
            if current is not None:
                yield current
            current, members = obj, {}
            if isinstance(obj.get("id"), str):
                members[obj["id"]] = obj
            continue
        owner = members.get(parent) if isinstance(parent, str) else None
        if owner is None:
            raise PayloadError(
                f"bulk JSONL line {number}: its parent {str(parent)[:80]} is not the object before it "
                "(run the operation with groupObjects: true)"
            )
        field = children.get(gid_type(obj.get("id")) or "")
        if field is None:
            raise PayloadError(f"bulk JSONL line {number}: unexpected child {str(obj.get('id'))[:80]}")
        owner.setdefault(field, {"nodes": []}).setdefault("nodes", []).append(obj)
        if isinstance(obj.get("id"), str):
            members[obj["id"]] = obj
    if current is not None:
        yield current
