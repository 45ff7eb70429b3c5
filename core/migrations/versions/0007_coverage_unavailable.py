"""coverage_days.unavailable_reason: days a provider cannot read (not available, never zero)

Revision ID: 0007_coverage_unavailable
Revises: 0006_snapshot_extra
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_coverage_unavailable"
down_revision = "0006_snapshot_extra"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable without a default: adding it rewrites no row; NULL means "fetched" as before.
    op.add_column("coverage_days", sa.Column("unavailable_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("coverage_days", "unavailable_reason")
