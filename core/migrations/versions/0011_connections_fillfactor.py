"""connections: fillfactor 40, so a fan-out's claim of a whole page stays heap-only (HOT)

The fan-out claims every due connection of a page in one ``UPDATE``. A HOT update needs room on the
row's own page for its new version, and the old versions of that statement's other rows are not dead
yet, so a page needs room for a second copy of each of its rows. Fillfactor 80 (migration 0010) left
room for about a quarter of them: three claims in four still wrote a new entry in every index of the
table (``bench.fanout``: ~1/4 of claims HOT, 80-200 ms of PostgreSQL time per 10,000 claims; at 40,
all HOT, 40-55 ms). Connections are ~150-250 bytes a row, so the table is ~2.5x larger (a few MB per
10,000 connections).

The setting applies to pages PostgreSQL fills from now on; existing rows move to roomier pages as they
are updated (a cold update places the new version by the fillfactor), or at once with
``VACUUM FULL connections`` at a quiet moment (it locks the table while it rewrites it).

Revision ID: 0011_connections_fillfactor
Revises: 0010_connections_hot
"""

from __future__ import annotations

from alembic import op

revision = "0011_connections_fillfactor"
down_revision = "0010_connections_hot"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE connections SET (fillfactor = 40)")


def downgrade() -> None:
    op.execute("ALTER TABLE connections SET (fillfactor = 80)")
