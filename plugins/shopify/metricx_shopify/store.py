"""Upserts into the plugin's tables, shared by the store sync and the webhooks.

Every write is one ``INSERT ... ON CONFLICT (connection_id, shopify_id) DO UPDATE``
that stores the platform's current value of every column, nulls included (a cleared tag, a
redacted e-mail stays cleared), replaces ``raw``, and never lets an older ``updated_at`` replace
a newer one. An order's line items are replaced in the
caller's transaction while the upsert holds the order's row lock, so a webhook
and a sync racing on one order both succeed and leave the newest version.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, delete, func, or_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core import accounts_for
from metricx_shopify import tables
from metricx_shopify.mapping import Row

# Columns managed here, not copied from the payload.
_SPECIAL = {"id", "workspace_id", "connection_id", "shopify_id", "raw", "synced_at"}


def _newest(rows: Sequence[Row]) -> list[Row]:
    """One row per shopify_id (the newest), sorted by id so concurrent writers lock in one order."""
    best: dict[int, Row] = {}
    for row in rows:
        seen = best.get(row["shopify_id"])
        if seen is None or _later(row, seen):
            best[row["shopify_id"]] = row
    return [best[key] for key in sorted(best)]


def _later(row: Row, seen: Row) -> bool:
    if seen.get("updated_at") is None:
        return True
    return row.get("updated_at") is not None and row["updated_at"] >= seen["updated_at"]


async def upsert_rows(
    session: AsyncSession,
    table: Table,
    workspace_id: uuid.UUID,
    connection_id: uuid.UUID,
    rows: Sequence[Row],
) -> dict[int, int]:
    """Upsert rows on (connection_id, shopify_id); returns {shopify_id: row id} of the rows written.

    A row whose ``updated_at`` is older than the stored one is skipped (not returned).
    """
    values = [{**row, "workspace_id": workspace_id, "connection_id": connection_id} for row in _newest(rows)]
    if not values:
        return {}
    stmt = insert(table).values(values)
    excluded = stmt.excluded
    # The current value wins, null included: Shopify clears tags and redacts names and e-mails.
    set_: dict[str, Any] = {
        name: excluded[name] for name in values[0] if name not in _SPECIAL and name in table.c
    }
    set_["raw"] = excluded.raw
    set_["synced_at"] = func.now()
    upsert = stmt.on_conflict_do_update(
        index_elements=[table.c.connection_id, table.c.shopify_id],
        set_=set_,
        where=or_(table.c.updated_at.is_(None), excluded.updated_at >= table.c.updated_at),
    ).returning(table.c.shopify_id, table.c.id)
    result = await session.execute(upsert)
    return {shopify_id: row_id for shopify_id, row_id in result.all()}


async def upsert_orders(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    connection_id: uuid.UUID,
    orders: Sequence[tuple[Row, list[Row] | None]],
) -> dict[int, int]:
    """Upsert orders, then replace the line items of every order written (in this transaction)."""
    written = await upsert_rows(session, tables.orders, workspace_id, connection_id, [o for o, _ in orders])
    items: dict[int, list[Row]] = {}
    for order, lines in orders:
        if lines is not None and order["shopify_id"] in written:
            items[written[order["shopify_id"]]] = lines
    if not items:
        return written
    li = tables.line_items
    await session.execute(delete(li).where(li.c.order_id.in_(list(items))))
    new_rows = {
        line["shopify_id"]: {
            **line,
            "order_id": order_id,
            "workspace_id": workspace_id,
            "connection_id": connection_id,
        }
        for order_id, lines in items.items()
        for line in lines
    }
    if new_rows:
        stmt = insert(li).values(list(new_rows.values()))
        stmt = stmt.on_conflict_do_update(
            index_elements=[li.c.connection_id, li.c.shopify_id],
            set_={c: stmt.excluded[c] for c in next(iter(new_rows.values())) if c not in ("shopify_id",)},
        )
        await session.execute(stmt)
    return written


async def connections_for_shop(shop: str) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(workspace_id, connection_id) of every non-disconnected Shopify connection of the shop."""
    accounts = await accounts_for("shopify", shop)
    return [(uuid.UUID(a.workspace_id), uuid.UUID(a.connection_id)) for a in accounts]
