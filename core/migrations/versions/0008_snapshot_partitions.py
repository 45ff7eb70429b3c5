"""metric_snapshots partitioned by month of metrics_date (declarative range partitions, a DEFAULT one)

Revision ID: 0008_snapshot_partitions
Revises: 0007_coverage_unavailable

The table is rebuilt in place, in this migration's transaction: a partitioned table with the
same columns, constraints and indexes (its primary key becomes ``(id, metrics_date)``: a
partitioned table's unique constraints include the partition key; ``uq_snapshots_natural``
already did, so ``ON CONFLICT ON CONSTRAINT uq_snapshots_natural`` is unchanged), one
partition per month from 24 months back to 2 ahead (:func:`core.partitions.months_for`), and a
DEFAULT partition for any other date (nothing is refused); the rows are copied (each into its
month's partition) and the old table dropped. The nightly compaction job
creates the coming months' partitions from then on (:mod:`core.partitions`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_snapshot_partitions"
down_revision = "0007_coverage_unavailable"
branch_labels = None
depends_on = None

COLUMNS = """
    id bigint NOT NULL DEFAULT nextval('metric_snapshots_id_seq'),
    workspace_id uuid NOT NULL,
    connection_id uuid NOT NULL,
    entity_id uuid NOT NULL,
    metrics_date date NOT NULL,
    captured_at timestamptz NOT NULL,
    spend numeric(20, 6) NOT NULL DEFAULT 0,
    impressions bigint NOT NULL DEFAULT 0,
    clicks bigint NOT NULL DEFAULT 0,
    conversions numeric(20, 6) NOT NULL DEFAULT 0,
    revenue numeric(20, 6) NOT NULL DEFAULT 0,
    currency varchar(8),
    extra jsonb
"""

FOREIGN_KEYS = """
    CONSTRAINT fk_metric_snapshots_connection_id_connections FOREIGN KEY (connection_id)
        REFERENCES connections (id) ON DELETE CASCADE,
    CONSTRAINT fk_metric_snapshots_entity_id_entities FOREIGN KEY (entity_id)
        REFERENCES entities (id) ON DELETE CASCADE,
    CONSTRAINT fk_metric_snapshots_workspace_id_workspaces FOREIGN KEY (workspace_id)
        REFERENCES workspaces (id) ON DELETE CASCADE
"""

NAMES = ("pk_metric_snapshots", "uq_snapshots_natural", "ix_snapshots_connection_date")


def _rename_old(suffix: str) -> None:
    op.execute("ALTER TABLE metric_snapshots RENAME TO metric_snapshots_old")
    op.execute(f"ALTER INDEX pk_metric_snapshots RENAME TO pk_metric_snapshots{suffix}")
    op.execute(f"ALTER INDEX uq_snapshots_natural RENAME TO uq_snapshots_natural{suffix}")
    op.execute(f"ALTER INDEX ix_snapshots_connection_date RENAME TO ix_snapshots_connection_date{suffix}")


def _copy_and_drop_old() -> None:
    op.execute("ALTER SEQUENCE metric_snapshots_id_seq OWNED BY metric_snapshots.id")
    op.execute("INSERT INTO metric_snapshots SELECT * FROM metric_snapshots_old")
    op.execute("DROP TABLE metric_snapshots_old")


def upgrade() -> None:
    from core.partitions import month_partitions, months_for

    _rename_old("_old")
    op.execute(
        f"""
        CREATE TABLE metric_snapshots (
            {COLUMNS},
            CONSTRAINT pk_metric_snapshots PRIMARY KEY (id, metrics_date),
            CONSTRAINT uq_snapshots_natural UNIQUE (entity_id, metrics_date, captured_at),
            {FOREIGN_KEYS}
        ) PARTITION BY RANGE (metrics_date)
        """
    )
    op.execute("CREATE INDEX ix_snapshots_connection_date ON metric_snapshots (connection_id, metrics_date)")
    op.execute("CREATE TABLE metric_snapshots_default PARTITION OF metric_snapshots DEFAULT")
    today = op.get_bind().execute(sa.text("SELECT current_date")).scalar_one()
    for statement in month_partitions(months_for(today)):
        op.execute(statement)
    _copy_and_drop_old()


def downgrade() -> None:
    _rename_old("_old")
    op.execute(
        f"""
        CREATE TABLE metric_snapshots (
            {COLUMNS},
            CONSTRAINT pk_metric_snapshots PRIMARY KEY (id),
            CONSTRAINT uq_snapshots_natural UNIQUE (entity_id, metrics_date, captured_at),
            {FOREIGN_KEYS}
        )
        """
    )
    op.execute("CREATE INDEX ix_snapshots_connection_date ON metric_snapshots (connection_id, metrics_date)")
    _copy_and_drop_old()
