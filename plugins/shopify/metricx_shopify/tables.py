"""The plugin's own tables (products, customers, orders, line items, sync state, webhook deliveries).

They live in their own ``MetaData`` and ship as the Alembic branch ``shopify``
(``migrations/versions``). Every row carries ``workspace_id`` and
``connection_id``; natural keys are (connection_id, shopify_id).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData()


def _tenancy() -> list[Column[object]]:
    # The foreign keys to the core's tables are declared in the migration (this MetaData
    # does not hold the core's tables).
    return [
        Column("workspace_id", UUID(as_uuid=True), nullable=False),
        Column("connection_id", UUID(as_uuid=True), nullable=False),
    ]


def _stamps() -> list[Column[object]]:
    return [
        Column("created_at", DateTime(timezone=True)),
        Column("updated_at", DateTime(timezone=True)),
        Column("raw", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("synced_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ]


MONEY = Numeric(20, 4)

products = Table(
    "shopify_products",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    *_tenancy(),
    Column("shopify_id", BigInteger, nullable=False),
    Column("title", Text),
    Column("handle", Text),
    Column("vendor", Text),
    Column("product_type", Text),
    Column("status", String(32)),
    Column("tags", Text),
    *_stamps(),
    UniqueConstraint("connection_id", "shopify_id", name="uq_shopify_products_natural"),
)

customers = Table(
    "shopify_customers",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    *_tenancy(),
    Column("shopify_id", BigInteger, nullable=False),
    Column("email", Text),
    Column("first_name", Text),
    Column("last_name", Text),
    Column("state", String(32)),
    Column("orders_count", Integer),
    Column("total_spent", MONEY),
    Column("currency", String(8)),
    *_stamps(),
    UniqueConstraint("connection_id", "shopify_id", name="uq_shopify_customers_natural"),
)

orders = Table(
    "shopify_orders",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    *_tenancy(),
    Column("shopify_id", BigInteger, nullable=False),
    Column("name", String(64)),
    Column("email", Text),
    Column("customer_shopify_id", BigInteger),
    Column("processed_at", DateTime(timezone=True)),
    Column("cancelled_at", DateTime(timezone=True)),
    Column("currency", String(8)),
    Column("total_price", MONEY),
    Column("subtotal_price", MONEY),
    Column("total_tax", MONEY),
    Column("total_discounts", MONEY),
    Column("total_refunded", MONEY),
    Column("financial_status", String(32)),
    Column("fulfillment_status", String(32)),
    Column("source_name", Text),
    Column("landing_site", Text),
    Column("referring_site", Text),
    Column("tags", Text),
    Column("test", Boolean),
    *_stamps(),
    UniqueConstraint("connection_id", "shopify_id", name="uq_shopify_orders_natural"),
)

line_items = Table(
    "shopify_order_line_items",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    *_tenancy(),
    Column("order_id", BigInteger, nullable=False),
    Column("shopify_id", BigInteger, nullable=False),
    Column("product_shopify_id", BigInteger),
    Column("variant_shopify_id", BigInteger),
    Column("title", Text),
    Column("sku", Text),
    Column("quantity", Integer),
    Column("price", MONEY),
    Column("total_discount", MONEY),
    Column("raw", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    UniqueConstraint("connection_id", "shopify_id", name="uq_shopify_order_line_items_natural"),
)

# One row per (connection, resource): where the running sync is, and where the next one starts.
sync_state = Table(
    "shopify_sync_state",
    metadata,
    *_tenancy(),
    Column("resource", String(32), nullable=False),
    # Completed runs: every row updated at or before this instant is stored.
    Column("watermark", DateTime(timezone=True)),
    # The running (or interrupted) run: its bounds, the newest updated_at stored, the next page.
    Column("run_min", DateTime(timezone=True)),
    Column("run_max", DateTime(timezone=True)),
    Column("last_updated_at", DateTime(timezone=True)),
    Column("page_info", Text),
    Column("rows_in_run", Integer, nullable=False, server_default="0"),
    Column("job_id", String(200)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("connection_id", "resource", name="uq_shopify_sync_state_natural"),
)

webhook_deliveries = Table(
    "shopify_webhook_deliveries",
    metadata,
    Column("webhook_id", String(128), primary_key=True),
    Column("topic", String(64), nullable=False),
    Column("shop_domain", String(255), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# The facts of a connection's token rotation that the core's credentials row has no column for
# (the tokens themselves live there, encrypted): which grant, when the refresh token expires, and
# how many rotations were stored.
tokens = Table(
    "shopify_tokens",
    metadata,
    Column("connection_id", UUID(as_uuid=True), primary_key=True),
    Column("workspace_id", UUID(as_uuid=True), nullable=False),
    Column("grant", String(32), nullable=False),
    Column("refresh_expires_at", DateTime(timezone=True)),
    Column("rotations", Integer, nullable=False, server_default="0"),
    Column("rotated_at", DateTime(timezone=True)),
)

# Webhook deliveries acknowledged but not yet applied: the route stores the verified, validated
# payload here and enqueues ``shopify.apply_webhook(id)`` (only the id travels in Redis). The job
# applies it and drops the payload (it may carry personal data); a failed apply keeps the row
# ``pending`` with its attempts and error, and the hourly fan-out enqueues it again.
webhook_inbox = Table(
    "shopify_webhook_inbox",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("topic", String(64), nullable=False),
    Column("shop_domain", String(255), nullable=False),
    Column("event_id", String(128)),
    Column("payload", JSONB),
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("result", JSONB),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("applied_at", DateTime(timezone=True)),
)
