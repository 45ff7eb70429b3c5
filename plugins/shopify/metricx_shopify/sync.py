"""The store sync: products, customers and orders, incrementally by ``updated_at``, checkpointed per page.

Each resource keeps one ``shopify_sync_state`` row. A run reads (GraphQL, ``sortKey: UPDATED_AT``)
``updated_at`` in [watermark - overlap, run start]; every page is upserted in the same transaction
that records its cursor (the ``endCursor`` in ``page_info`` and the newest ``updated_at`` stored),
so a killed worker's retry continues where the last committed page ended. A rejected cursor falls
back to ``updated_at:>=`` the newest stored.

A first (or ``full``) read of orders has no lower bound: the whole store. It runs as one bulk
operation (``bulk_store_sync``; :mod:`metricx_shopify.bulk`), whose orders are upserted in batches
as they stream; a killed try's retry adopts the operation still running. A bulk operation that
fails part-way leaves the complete orders stored and fails the try as transient.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Table, delete, select
from sqlalchemy.dialects.postgresql import insert

from core import ConfigError, SyncContext, plugin_session
from metricx_shopify import tables
from metricx_shopify.bulk import BulkPartialData
from metricx_shopify.client import InvalidPageInfo, ShopifyClient
from metricx_shopify.mapping import Row, customer_row, order_row, product_row
from metricx_shopify.provider import ShopifyProvider, verified_shop
from metricx_shopify.store import upsert_orders, upsert_rows

log = structlog.get_logger(__name__, component="SHOPIFY_SYNC")

RESOURCES: tuple[str, ...] = ("products", "customers", "orders")
_TABLES: dict[str, Table] = {"products": tables.products, "customers": tables.customers}
_MAPPERS: dict[str, Callable[[object], Row]] = {"products": product_row, "customers": customer_row}


def _now_s() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def search(since: datetime | None, until: datetime) -> str:
    """Shopify's search syntax for ``updated_at`` in [since, until] (GraphQL lists every order status)."""
    terms = [f"updated_at:<='{until.isoformat()}'"]
    if since is not None:
        terms.insert(0, f"updated_at:>='{since.isoformat()}'")
    return " AND ".join(terms)


async def _load_state(connection_id: uuid.UUID, resource: str) -> dict[str, Any] | None:
    st = tables.sync_state
    async with plugin_session() as session:
        row = (
            await session.execute(
                select(st).where(st.c.connection_id == connection_id, st.c.resource == resource)
            )
        ).first()
    return dict(row._mapping) if row else None


async def _save_state(
    session: Any, sctx: SyncContext, resource: str, *, add_rows: int = 0, **values: Any
) -> None:
    st = tables.sync_state
    values["updated_at"] = datetime.now(UTC)
    stmt = insert(st).values(
        workspace_id=sctx.workspace_id, connection_id=sctx.connection_id, resource=resource, **values
    )
    updates = dict(values)
    if add_rows:
        updates["rows_in_run"] = st.c.rows_in_run + add_rows
    stmt = stmt.on_conflict_do_update(index_elements=[st.c.connection_id, st.c.resource], set_=updates)
    await session.execute(stmt)


async def _write_page(session: Any, sctx: SyncContext, resource: str, rows: list[dict[str, Any]]) -> None:
    if resource == "orders":
        await upsert_orders(session, sctx.workspace_id, sctx.connection_id, [order_row(r) for r in rows])
    else:
        mapper = _MAPPERS[resource]
        await upsert_rows(
            session, _TABLES[resource], sctx.workspace_id, sctx.connection_id, [mapper(r) for r in rows]
        )


def _newest_updated(rows: list[dict[str, Any]], current: datetime | None) -> datetime | None:
    newest = current
    for row in rows:
        value = row.get("updated_at")
        if isinstance(value, str):
            stamp = datetime.fromisoformat(value)
            newest = stamp if newest is None or stamp > newest else newest
    return newest


async def sync_resource(client: ShopifyClient, sctx: SyncContext, resource: str, *, full: bool) -> int:
    """Sync one resource from its checkpoint (or a new run); returns the rows read in this try."""
    state = await _load_state(sctx.connection_id, resource)
    resume = bool(state and state["run_max"] is not None and not (full and state["job_id"] != sctx.job_id))
    if resume and state is not None:
        run_min, run_max = state["run_min"], state["run_max"]
        last, page_info = state["last_updated_at"], state["page_info"]
        log.info(
            "resource_resumed", resource=resource, rows_before=state["rows_in_run"], cursor=bool(page_info)
        )
    else:
        watermark = state["watermark"] if state and not full else None
        overlap = timedelta(seconds=client.settings.cursor_overlap_s)
        run_min, run_max = (watermark - overlap if watermark else None), _now_s()
        last, page_info = None, None
        async with plugin_session() as session:
            await _save_state(
                session,
                sctx,
                resource,
                run_min=run_min,
                run_max=run_max,
                last_updated_at=None,
                page_info=None,
                rows_in_run=0,
                job_id=sctx.job_id,
            )
    if resource == "orders" and run_min is None and not page_info and client.settings.bulk_store_sync:
        rows = await _bulk_orders(client, sctx, run_max)
        await _finish(sctx, resource, run_min, run_max, rows)
        return rows
    rows = 0
    while True:
        try:
            pages = client.iterate(resource, search(last or run_min, run_max), page_info=page_info)
            async for page in pages:
                last = _newest_updated(page.rows, last)
                async with plugin_session() as session:
                    await _write_page(session, sctx, resource, page.rows)
                    await _save_state(
                        session,
                        sctx,
                        resource,
                        last_updated_at=last,
                        page_info=page.next_page_info,
                        add_rows=len(page.rows),
                    )
                sctx.add_rows(len(page.rows))
                await sctx.progress()
                page_info = page.next_page_info
                rows += len(page.rows)
            break
        except InvalidPageInfo:
            if page_info is None:
                raise
            log.warning("page_cursor_rejected", resource=resource, resume_from=str(last or run_min))
            page_info = None
    await _finish(sctx, resource, run_min, run_max, rows)
    return rows


async def _bulk_orders(client: ShopifyClient, sctx: SyncContext, run_max: datetime) -> int:
    """Every order updated up to ``run_max``, by one bulk operation, upserted a batch at a time."""
    batch: list[dict[str, Any]] = []
    last: datetime | None = None
    rows = 0

    async def flush() -> None:
        nonlocal batch, last, rows
        if not batch:
            return
        last = _newest_updated(batch, last)
        async with plugin_session() as session:
            await _write_page(session, sctx, "orders", batch)
            await _save_state(session, sctx, "orders", last_updated_at=last, add_rows=len(batch))
        sctx.add_rows(len(batch))
        await sctx.progress()
        rows += len(batch)
        batch = []

    try:
        async for order in client.bulk("orders", search(None, run_max)):
            batch.append(order)
            if len(batch) >= client.settings.page_size:
                await flush()
    except BulkPartialData:
        await flush()  # the complete orders the failed operation delivered
        raise
    await flush()
    return rows


async def _finish(
    sctx: SyncContext, resource: str, run_min: datetime | None, run_max: datetime, rows: int
) -> None:
    async with plugin_session() as session:
        await _save_state(
            session,
            sctx,
            resource,
            watermark=run_max,
            run_min=None,
            run_max=None,
            last_updated_at=None,
            page_info=None,
            job_id=None,
        )
    log.info("resource_synced", resource=resource, rows=rows, since=str(run_min), until=str(run_max))


RECONCILE_EVERY = timedelta(hours=24)
#: Without read_all_orders only orders of the last 60 days are visible: reconcile within 59 of them.
VISIBLE_ORDERS = timedelta(days=59)


async def reconcile_deletions(client: ShopifyClient, sctx: SyncContext, *, force: bool) -> dict[str, int]:
    """Delete stored rows Shopify no longer has (a missed ``*/delete`` webhook), at most once a day.

    Lists the ids that exist now and deletes the stored rows of this connection that are not among
    them and were stored before the listing began (a row a webhook adds meanwhile stays). Without
    ``read_all_orders`` only orders created in the visible window are compared.
    """
    state = await _load_state(sctx.connection_id, "reconcile")
    started = datetime.now(UTC)
    if not force and state and state["watermark"] and state["watermark"] > started - RECONCILE_EVERY:
        return {}
    scopes = await client.access_scopes()
    deleted: dict[str, int] = {}
    for resource, table in (
        ("products", tables.products),
        ("customers", tables.customers),
        ("orders", tables.orders),
    ):
        where = [table.c.connection_id == sctx.connection_id, table.c.synced_at < started]
        search = None
        if resource == "orders" and "read_all_orders" not in scopes:
            since = (started - VISIBLE_ORDERS).replace(microsecond=0)
            search = f"created_at:>='{since.isoformat()}'"
            where.append(table.c.created_at >= since)
        existing = await client.ids(resource, search)
        async with plugin_session() as session:
            gone = select(table.c.id).where(*where, table.c.shopify_id.notin_(existing))
            if resource == "orders":
                li = tables.line_items
                await session.execute(delete(li).where(li.c.order_id.in_(gone)))
            result = await session.execute(delete(table).where(table.c.id.in_(gone)))
            deleted[resource] = int(getattr(result, "rowcount", 0) or 0)
    async with plugin_session() as session:
        await _save_state(session, sctx, "reconcile", watermark=started)
    log.info("deletions_reconciled", **deleted)
    return deleted


async def store_work(sctx: SyncContext) -> None:
    """The store sync's work inside the core's sync engine: shop facts, then each resource with progress.

    Option ``full``: ignore the resources' cursors and read everything again.
    """
    provider = sctx.provider
    if not isinstance(provider, ShopifyProvider):
        raise ConfigError(f"process_shopify_sync_job needs a shopify connection, not {provider.name!r}")
    full = bool(sctx.options.get("full", False))
    provider.check_credentials(sctx.credentials)
    client = provider.client(sctx.provider_context, sctx.account, sctx.credentials)
    shop = await verified_shop(client)
    await sctx.update_account(
        name=shop.get("name"), timezone=shop["iana_timezone"], currency=shop["currency"]
    )
    await sctx.progress(done=0, total=len(RESOURCES))
    for done, resource in enumerate(RESOURCES, start=1):
        await sync_resource(client, sctx, resource, full=full)
        await sctx.progress(done=done)
    await reconcile_deletions(client, sctx, force=full)
