"""scheduler ticks and coverage days

Revision ID: 0003_scheduler_ticks
Revises: 0001
Create Date: 2026-12-02 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_scheduler_ticks"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduler_ticks",
        sa.Column("queue", sa.String(length=200), nullable=False),
        sa.Column("entry", sa.String(length=200), nullable=False),
        sa.Column("last_tick", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("queue", "entry", name=op.f("pk_scheduler_ticks")),
    )
    op.create_table(
        "coverage_days",
        sa.Column("connection_id", sa.UUID(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_coverage_days_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("connection_id", "day", name=op.f("pk_coverage_days")),
    )


def downgrade() -> None:
    op.drop_table("coverage_days")
    op.drop_table("scheduler_ticks")
