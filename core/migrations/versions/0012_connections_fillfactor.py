"""connections: fillfactor 40, so a fan-out's claim of a whole page stays heap-only (HOT)

The fan-out claims every due connection of a page in one ``UPDATE``. A HOT update needs room on the
row's own page for its new version, and the old versions of that statement's other rows are not dead
yet, so a page needs room for a second copy of each of its rows. Fillfactor 80 (migration 0010) left
room for about a quarter of them: in ``bench.fanout`` 25-65% of the claims were HOT (depending on how
much of each page pruning had freed since the last pass), the rest wrote an entry in every index of
the table and spread rows over new pages. At 40 all of them are HOT (the claim step of 10,000
connections, timed sequentially in the same sitting: 79-91 ms -> 67-75 ms). Fresh pages hold half
as many rows as at 80 (a few MB per 10,000 connections).

The setting applies to pages PostgreSQL fills from now on; an existing row moves to a roomier page
when an update finds no room on its own (the new version is placed by the fillfactor), or all at once
with ``VACUUM FULL connections`` at a quiet moment (it locks the table while it rewrites it).

Revision ID: 0012_connections_fillfactor
Revises: 0011_snapshot_integrity_in_app
"""

from __future__ import annotations

from alembic import op

revision = "0012_connections_fillfactor"
down_revision = "0011_snapshot_integrity_in_app"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE connections SET (fillfactor = 40)")


def downgrade() -> None:
    op.execute("ALTER TABLE connections SET (fillfactor = 80)")
