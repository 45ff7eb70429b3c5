"""Database access: models, the async engine and sessions, Alembic upgrades."""
