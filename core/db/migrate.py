"""``metricx db upgrade``: Alembic over the core branch plus each plugin's own branch."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

from core.db.engine import async_url
from core.plugins import get_registry

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic config whose version locations are core's and every loaded plugin's."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    locations = [str(MIGRATIONS / "versions")]
    locations += [location for _, location in get_registry().migration_locations]
    cfg.set_main_option("version_locations", " ".join(locations))
    cfg.set_main_option("path_separator", "space")
    cfg.set_main_option("sqlalchemy.url", async_url(database_url).replace("%", "%%"))
    cfg.attributes["database_url"] = database_url  # env.py builds its engine (TLS included) from it
    return cfg


def upgrade(database_url: str, revision: str = "heads") -> None:
    """Bring the database to the newest revision of every installed branch."""
    command.upgrade(alembic_config(database_url), revision)


async def table_names(database_url: str) -> set[str]:
    """The tables of ``DATABASE_URL``'s current schema (what ``metricx db upgrade`` reports it created)."""
    from sqlalchemy import text

    from core.db.engine import create_engine

    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            )
            return {str(name) for (name,) in rows}
    finally:
        await engine.dispose()


async def upgrade_async(database_url: str, revision: str = "heads") -> None:
    """:func:`upgrade` from async code (Alembic's env runs its own event loop)."""
    await asyncio.to_thread(upgrade, database_url, revision)
