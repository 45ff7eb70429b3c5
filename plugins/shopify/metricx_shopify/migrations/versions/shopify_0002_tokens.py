"""shopify: token rotation facts per connection (grant, refresh token expiry, rotations)

Revision ID: shopify_0002
Revises: shopify_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "shopify_0002"
down_revision = "shopify_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shopify_tokens",
        sa.Column("connection_id", sa.UUID(), primary_key=True),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("grant", sa.String(32), nullable=False),
        sa.Column("refresh_expires_at", sa.DateTime(timezone=True)),
        sa.Column("rotations", sa.Integer(), server_default="0", nullable=False),
        sa.Column("rotated_at", sa.DateTime(timezone=True)),
        sa.ForeignKeyConstraint(
            ["connection_id"], ["connections.id"], name="fk_shopify_tokens_connection_id", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name="fk_shopify_tokens_workspace_id", ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    op.drop_table("shopify_tokens")
