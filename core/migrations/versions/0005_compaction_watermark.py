"""connections.compacted_through: the last day compaction has folded for the connection

Revision ID: 0005_compaction_watermark
Revises: 0004_alert_webhooks
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_compaction_watermark"
down_revision = "0004_alert_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Days up to this one are compact and receive no more 15-minute snapshots (a past day is only
    # ever written at its end): the nightly compaction reads the days after it, not all history.
    # NULL: never compacted (the first run reads the connection's whole history once).
    op.add_column("connections", sa.Column("compacted_through", sa.Date(), nullable=True))


def downgrade() -> None:
    op.drop_column("connections", "compacted_through")
