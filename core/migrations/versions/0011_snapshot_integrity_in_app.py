"""metric_snapshots without foreign keys: its integrity is kept by the code that writes and deletes it

Revision ID: 0011_snapshot_integrity_in_app
Revises: 0010_connections_hot

DESIGN. ``metric_snapshots`` is the one large fact table (every 15-minute slot of every entity).
Its three foreign keys (connection, entity, workspace; ``ON DELETE CASCADE``) cost one key check
per row and key on every insert: 41-49 ms of a ~70-80 ms 5,000-row upsert (``EXPLAIN ANALYZE``
trigger times), for facts the writer already holds. As large fact tables commonly do, the
references are enforced by the application instead:

- **Writes** (:func:`core.sync.upserts.upsert_snapshots`, the only writer) take the three ids from
  stored rows: the connection row, locked ``FOR KEY SHARE`` for the transaction (the lock a foreign
  key check takes, once per batch instead of once per row and key), and the entity joined on that
  connection. A batch for a connection that is gone, or that is not the given workspace's, writes
  nothing and raises.
- **Hard deletes** delete the snapshots explicitly, in the same transaction, after the parent row
  (``core.services.delete_connection(keep_data=False)``, ``core.services.delete_workspace``). Deleting
  the parent first takes its row lock, so a write still holding the connection's key-share lock is
  waited for and its rows are then deleted too; a write that starts after finds no connection.
  Entities are only ever deleted with their connection. Soft deletes (a connection deleted with its
  data kept, Shopify's ``app/uninstalled``) keep the snapshots, as before.
- ``TRUNCATE connections CASCADE`` no longer reaches ``metric_snapshots``: name it too.

Downgrade deletes the snapshots whose connection, entity or workspace is gone (what the cascade
would have done) and adds the constraints back (validated: PostgreSQL 15 refuses ``NOT VALID``
foreign keys on a partitioned table).
"""

from __future__ import annotations

from alembic import op

revision = "0011_snapshot_integrity_in_app"
down_revision = "0010_connections_hot"
branch_labels = None
depends_on = None

FOREIGN_KEYS = (
    ("fk_metric_snapshots_connection_id_connections", "connection_id", "connections"),
    ("fk_metric_snapshots_entity_id_entities", "entity_id", "entities"),
    ("fk_metric_snapshots_workspace_id_workspaces", "workspace_id", "workspaces"),
)


def upgrade() -> None:
    for name, _, _ in FOREIGN_KEYS:
        op.execute(f"ALTER TABLE metric_snapshots DROP CONSTRAINT IF EXISTS {name}")


def downgrade() -> None:
    for _, column, parent in FOREIGN_KEYS:
        op.execute(
            f"DELETE FROM metric_snapshots s "
            f"WHERE NOT EXISTS (SELECT 1 FROM {parent} p WHERE p.id = s.{column})"
        )
    for name, column, parent in FOREIGN_KEYS:
        op.execute(
            f"ALTER TABLE metric_snapshots ADD CONSTRAINT {name} FOREIGN KEY ({column}) "
            f"REFERENCES {parent} (id) ON DELETE CASCADE"
        )
