"""metric_snapshots.extra: a platform's own daily totals beside the five core metrics

Revision ID: 0006_snapshot_extra
Revises: 0005_compaction_watermark
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006_snapshot_extra"
down_revision = "0005_compaction_watermark"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable without a default: adding it rewrites no row; NULL means "no platform extras".
    op.add_column("metric_snapshots", sa.Column("extra", JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("metric_snapshots", "extra")
