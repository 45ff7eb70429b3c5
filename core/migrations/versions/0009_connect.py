"""connect_sessions (OAuth connect flows) and credentials.grant_id (tokens shared by one grant)

Revision ID: 0009_connect
Revises: 0007_coverage_unavailable
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009_connect"
down_revision = "0008_snapshot_partitions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("credentials", sa.Column("grant_id", postgresql.UUID(as_uuid=True), nullable=True))
    op.create_index("ix_credentials_grant_id", "credentials", ["grant_id"])
    op.create_table(
        "connect_sessions",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "workspace_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "api_key_id", postgresql.UUID(as_uuid=True), sa.ForeignKey("api_keys.id", ondelete="CASCADE")
        ),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("state_digest", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), server_default="pending", nullable=False),
        sa.Column("params", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("code_verifier_enc", sa.LargeBinary()),
        sa.Column(
            "reconnect_connection_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey("connections.id", ondelete="CASCADE"),
        ),
        sa.Column("access_token_enc", sa.LargeBinary()),
        sa.Column("refresh_token_enc", sa.LargeBinary()),
        sa.Column("token_expires_at", sa.DateTime(timezone=True)),
        sa.Column("scopes", sa.Text()),
        sa.Column("accounts", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column("error_code", sa.String(32)),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("state_digest", name="uq_connect_sessions_state_digest"),
    )
    op.create_index("ix_connect_sessions_workspace_id", "connect_sessions", ["workspace_id"])


def downgrade() -> None:
    op.drop_table("connect_sessions")
    op.drop_index("ix_credentials_grant_id", table_name="credentials")
    op.drop_column("credentials", "grant_id")
