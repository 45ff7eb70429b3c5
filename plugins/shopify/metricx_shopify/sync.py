"""The store sync: products, customers and orders, incrementally by ``updated_at``, checkpointed per page.

Each resource keeps one ``shopify_sync_state`` row. A run reads
``updated_at`` in [watermark - overlap, run start] in ascending ``updated_at``
order with ``status=any``; every page is upserted in the same transaction that
records its cursor (the next ``page_info`` and the newest ``updated_at``
stored), so a killed worker's retry continues where the last committed page
ended. A rejected cursor falls back to ``updated_at_min`` = newest stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Table, select, update
from sqlalchemy.dialects.postgresql import insert

from core import ConfigError, provider_context
from core.db.engine import session_scope
from core.db.models import Connection
from core.sync import status
from core.sync.engine import Loaded, SyncJob
from core.sync.fetch import account_ref
from metricx_shopify import tables
from metricx_shopify.client import InvalidPageInfo, ShopifyClient
from metricx_shopify.mapping import Row, customer_row, order_row, product_row
from metricx_shopify.store import upsert_orders, upsert_rows

log = structlog.get_logger(__name__, component="SHOPIFY_SYNC")

RESOURCES: tuple[str, ...] = ("products", "customers", "orders")
_EXTRA: dict[str, dict[str, str]] = {"orders": {"status": "any"}}
_TABLES: dict[str, Table] = {"products": tables.products, "customers": tables.customers}
_MAPPERS: dict[str, Callable[[object], Row]] = {"products": product_row, "customers": customer_row}


def _now_s() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _filters(resource: str, since: datetime | None, until: datetime) -> dict[str, Any]:
    filters: dict[str, Any] = {"updated_at_max": until.isoformat(), "order": "updated_at asc"}
    if since is not None:
        filters["updated_at_min"] = since.isoformat()
    return {**filters, **_EXTRA.get(resource, {})}


async def _load_state(connection_id: uuid.UUID, resource: str) -> dict[str, Any] | None:
    st = tables.sync_state
    async with session_scope() as session:
        row = (
            await session.execute(
                select(st).where(st.c.connection_id == connection_id, st.c.resource == resource)
            )
        ).first()
    return dict(row._mapping) if row else None


async def _save_state(session: Any, job: SyncJob, resource: str, *, add_rows: int = 0, **values: Any) -> None:
    st = tables.sync_state
    values["updated_at"] = datetime.now(UTC)
    stmt = insert(st).values(
        workspace_id=job.workspace_id, connection_id=job.connection_id, resource=resource, **values
    )
    updates = dict(values)
    if add_rows:
        updates["rows_in_run"] = st.c.rows_in_run + add_rows
    stmt = stmt.on_conflict_do_update(index_elements=[st.c.connection_id, st.c.resource], set_=updates)
    await session.execute(stmt)


async def _write_page(session: Any, job: SyncJob, resource: str, rows: list[dict[str, Any]]) -> None:
    if resource == "orders":
        await upsert_orders(session, job.workspace_id, job.connection_id, [order_row(r) for r in rows])
    else:
        mapper = _MAPPERS[resource]
        await upsert_rows(
            session, _TABLES[resource], job.workspace_id, job.connection_id, [mapper(r) for r in rows]
        )


def _newest_updated(rows: list[dict[str, Any]], current: datetime | None) -> datetime | None:
    newest = current
    for row in rows:
        value = row.get("updated_at")
        if isinstance(value, str):
            stamp = datetime.fromisoformat(value)
            newest = stamp if newest is None or stamp > newest else newest
    return newest


async def sync_resource(
    client: ShopifyClient, job: SyncJob, run_id: uuid.UUID, resource: str, *, full: bool
) -> int:
    """Sync one resource from its checkpoint (or a new run); returns the rows read in this try."""
    state = await _load_state(job.connection_id, resource)
    resume = bool(state and state["run_max"] is not None and not (full and state["job_id"] != job.job_id))
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
        async with session_scope() as session:
            await _save_state(
                session,
                job,
                resource,
                run_min=run_min,
                run_max=run_max,
                last_updated_at=None,
                page_info=None,
                rows_in_run=0,
                job_id=job.job_id,
            )
    rows = 0
    while True:
        try:
            pages = client.iterate(
                resource, _filters(resource, last or run_min, run_max), page_info=page_info
            )
            async for page in pages:
                last = _newest_updated(page.rows, last)
                async with session_scope() as session:
                    await _write_page(session, job, resource, page.rows)
                    job.stats["rows"] += len(page.rows)
                    await _save_state(
                        session,
                        job,
                        resource,
                        last_updated_at=last,
                        page_info=page.next_page_info,
                        add_rows=len(page.rows),
                    )
                    await status.update_run(session, run_id, rows_written=job.stats["rows"])
                page_info = page.next_page_info
                rows += len(page.rows)
            break
        except InvalidPageInfo:
            if page_info is None:
                raise
            log.warning("page_cursor_rejected", resource=resource, resume_from=str(last or run_min))
            page_info = None
    async with session_scope() as session:
        await _save_state(
            session,
            job,
            resource,
            watermark=run_max,
            run_min=None,
            run_max=None,
            last_updated_at=None,
            page_info=None,
            job_id=None,
        )
    log.info("resource_synced", resource=resource, rows=rows, since=str(run_min), until=str(run_max))
    return rows


async def _refresh_shop(client: ShopifyClient, loaded: Loaded) -> None:
    shop = await client.fetch_shop()
    conn = loaded.connection
    changes: dict[str, Any] = {"timezone": shop["iana_timezone"], "currency": shop["currency"]}
    if shop.get("name") and not conn.name:
        changes["name"] = shop["name"]
    if any(getattr(conn, key) != value for key, value in changes.items()):
        async with session_scope() as session:
            await session.execute(update(Connection).where(Connection.id == conn.id).values(**changes))
        for key, value in changes.items():
            setattr(conn, key, value)


async def store_work(
    job: SyncJob, ctx: dict[str, Any], loaded: Loaded, run_id: uuid.UUID, *, full: bool = False
) -> None:
    """The store sync's work inside ``run_sync``: shop facts, then each resource with progress."""
    provider = loaded.provider
    if provider.name != "shopify":
        raise ConfigError(f"process_shopify_sync_job needs a shopify connection, not {provider.name!r}")
    pctx = provider_context(
        redis=ctx["redis"],
        client=ctx["http"],
        provider=provider,
        account=loaded.connection.external_account_id,
        settings=ctx["settings"],
    )
    limiter = pctx.limiter
    try:
        provider.check_credentials(loaded.credentials)
        client = provider.client(pctx, account_ref(loaded.connection), loaded.credentials)  # type: ignore[attr-defined]
        await _refresh_shop(client, loaded)
        async with session_scope() as session:
            await status.update_run(session, run_id, slices_total=len(RESOURCES), slices_done=0)
        for done, resource in enumerate(RESOURCES, start=1):
            await sync_resource(client, job, run_id, resource, full=full)
            async with session_scope() as session:
                await status.update_run(session, run_id, slices_done=done, rows_written=job.stats["rows"])
    finally:
        job.stats.update(limiter.stats())
