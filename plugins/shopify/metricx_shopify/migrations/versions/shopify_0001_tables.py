"""shopify: products, customers, orders, line items, sync state, webhook deliveries

Revision ID: shopify_0001
Revises:
Depends on: 0001 (core tables)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import SchemaItem

revision = "shopify_0001"
down_revision = None
branch_labels = ("shopify",)
depends_on = "0001"

MONEY = sa.Numeric(20, 4)


def _tenancy(table: str) -> list[SchemaItem]:
    return [
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("connection_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=f"fk_{table}_workspace_id", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"], ["connections.id"], name=f"fk_{table}_connection_id", ondelete="CASCADE"
        ),
    ]


def _stamps() -> list[SchemaItem]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
        sa.Column("raw", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    ]


def _natural(table: str) -> list[SchemaItem]:
    return [
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        *_tenancy(table),
        sa.Column("shopify_id", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("connection_id", "shopify_id", name=f"uq_{table}_natural"),
    ]


def upgrade() -> None:
    op.create_table(
        "shopify_products",
        *_natural("shopify_products"),
        sa.Column("title", sa.Text()),
        sa.Column("handle", sa.Text()),
        sa.Column("vendor", sa.Text()),
        sa.Column("product_type", sa.Text()),
        sa.Column("status", sa.String(32)),
        sa.Column("tags", sa.Text()),
        *_stamps(),
    )
    op.create_table(
        "shopify_customers",
        *_natural("shopify_customers"),
        sa.Column("email", sa.Text()),
        sa.Column("first_name", sa.Text()),
        sa.Column("last_name", sa.Text()),
        sa.Column("state", sa.String(32)),
        sa.Column("orders_count", sa.Integer()),
        sa.Column("total_spent", MONEY),
        sa.Column("currency", sa.String(8)),
        *_stamps(),
    )
    op.create_table(
        "shopify_orders",
        *_natural("shopify_orders"),
        sa.Column("name", sa.String(64)),
        sa.Column("email", sa.Text()),
        sa.Column("customer_shopify_id", sa.BigInteger()),
        sa.Column("processed_at", sa.DateTime(timezone=True)),
        sa.Column("cancelled_at", sa.DateTime(timezone=True)),
        sa.Column("currency", sa.String(8)),
        sa.Column("total_price", MONEY),
        sa.Column("subtotal_price", MONEY),
        sa.Column("total_tax", MONEY),
        sa.Column("total_discounts", MONEY),
        sa.Column("total_refunded", MONEY),
        sa.Column("financial_status", sa.String(32)),
        sa.Column("fulfillment_status", sa.String(32)),
        sa.Column("source_name", sa.Text()),
        sa.Column("landing_site", sa.Text()),
        sa.Column("referring_site", sa.Text()),
        sa.Column("tags", sa.Text()),
        sa.Column("test", sa.Boolean()),
        *_stamps(),
    )
    op.create_index("ix_shopify_orders_connection_created", "shopify_orders", ["connection_id", "created_at"])
    op.create_table(
        "shopify_order_line_items",
        *_natural("shopify_order_line_items"),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("product_shopify_id", sa.BigInteger()),
        sa.Column("variant_shopify_id", sa.BigInteger()),
        sa.Column("title", sa.Text()),
        sa.Column("sku", sa.Text()),
        sa.Column("quantity", sa.Integer()),
        sa.Column("price", MONEY),
        sa.Column("total_discount", MONEY),
        sa.Column("raw", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["shopify_orders.id"],
            name="fk_shopify_order_line_items_order_id",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_shopify_order_line_items_order_id", "shopify_order_line_items", ["order_id"])
    op.create_table(
        "shopify_sync_state",
        *_tenancy("shopify_sync_state"),
        sa.Column("resource", sa.String(32), nullable=False),
        sa.Column("watermark", sa.DateTime(timezone=True)),
        sa.Column("run_min", sa.DateTime(timezone=True)),
        sa.Column("run_max", sa.DateTime(timezone=True)),
        sa.Column("last_updated_at", sa.DateTime(timezone=True)),
        sa.Column("page_info", sa.Text()),
        sa.Column("rows_in_run", sa.Integer(), server_default="0", nullable=False),
        sa.Column("job_id", sa.String(200)),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.UniqueConstraint("connection_id", "resource", name="uq_shopify_sync_state_natural"),
    )
    op.create_table(
        "shopify_webhook_deliveries",
        sa.Column("webhook_id", sa.String(128), primary_key=True),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("shop_domain", sa.String(255), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    )
    op.create_index(
        "ix_shopify_webhook_deliveries_received_at", "shopify_webhook_deliveries", ["received_at"]
    )


def downgrade() -> None:
    for table in (
        "shopify_webhook_deliveries",
        "shopify_sync_state",
        "shopify_order_line_items",
        "shopify_orders",
        "shopify_customers",
        "shopify_products",
    ):
        op.drop_table(table)
