"""shopify: the webhook inbox (deliveries acknowledged by the route, applied by a job)

Revision ID: shopify_0003
Revises: shopify_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "shopify_0003"
down_revision = "shopify_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shopify_webhook_inbox",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("shop_domain", sa.String(255), nullable=False),
        sa.Column("event_id", sa.String(128)),
        sa.Column("payload", JSONB()),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text()),
        sa.Column("result", JSONB()),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("applied_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "ix_shopify_webhook_inbox_pending",
        "shopify_webhook_inbox",
        ["received_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_shopify_webhook_inbox_pending", table_name="shopify_webhook_inbox")
    op.drop_table("shopify_webhook_inbox")
