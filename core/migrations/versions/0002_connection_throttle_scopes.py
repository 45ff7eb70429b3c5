"""connections.throttle_scopes: the rate-limit scope keys a sync verified

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 02:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Keys of the throttle scopes (token, app, developer, verified account) a connection shares with
    # others; a block at one scope marks every connection holding its key (a GIN-indexed @> lookup).
    op.add_column(
        "connections",
        sa.Column(
            "throttle_scopes",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
    )
    op.create_index(
        "ix_connections_throttle_scopes",
        "connections",
        ["throttle_scopes"],
        unique=False,
        postgresql_using="gin",
    )


def downgrade() -> None:
    op.drop_index("ix_connections_throttle_scopes", table_name="connections", postgresql_using="gin")
    op.drop_column("connections", "throttle_scopes")
