"""connections: claims and status changes as heap-only (HOT) updates

The fan-out claims thousands of connections per tick (``sync_status`` -> ``queued``) and every sync
moves ``sync_status`` again at its start and finish. With ``sync_status`` in an index, each of those
updates writes a new index entry in every index of the table; without it, and with room left on each
page (fillfactor 80), PostgreSQL updates the row in place (a HOT update). The fan-out scans by
``status`` alone: the few connections not idle are filtered from the active ones.

Revision ID: 0010_connections_hot
Revises: 0009_connect
"""

from __future__ import annotations

from alembic import op

revision = "0010_connections_hot"
down_revision = "0009_connect"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_connections_status", "connections", ["status"], unique=False)
    op.drop_index("ix_connections_status_sync_status", table_name="connections")
    op.execute("ALTER TABLE connections SET (fillfactor = 80)")


def downgrade() -> None:
    op.execute("ALTER TABLE connections RESET (fillfactor)")
    op.create_index(
        "ix_connections_status_sync_status", "connections", ["status", "sync_status"], unique=False
    )
    op.drop_index("ix_connections_status", table_name="connections")
