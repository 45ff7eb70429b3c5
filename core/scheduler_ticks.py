"""The scheduler's last tick per entry, kept in PostgreSQL as well as Redis.

Redis records each entry's last tick atomically with the enqueue (the Lua
fence in :func:`core.enqueue.enqueue_tick`); this copy survives a Redis data
loss, so a scheduler whose Redis came back empty does not run a tick twice.
The scheduler reads the later of the two.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError

from core.db.engine import session_scope
from core.db.models import SchedulerTick
from core.errors import ConfigError

log = structlog.get_logger(__name__, component="SCHEDULER")

# The database being away must not stop the scheduler: Redis still fences every tick.
DB_ERRORS = (SQLAlchemyError, OSError, ConfigError)


async def load(queue: str) -> dict[str, datetime]:
    """The last tick per entry recorded for ``queue``; empty if the database cannot be read."""
    try:
        async with session_scope() as session:
            rows = await session.execute(
                select(SchedulerTick.entry, SchedulerTick.last_tick).where(SchedulerTick.queue == queue)
            )
            return {entry: tick for entry, tick in rows}
    except DB_ERRORS as exc:
        log.warning("tick_store_unavailable", error=str(exc)[:200])
        return {}


async def record(queue: str, entry: str, tick: datetime) -> bool:
    """Record ``tick`` as the entry's last (never moving it back); False if the database is away."""
    stmt = insert(SchedulerTick).values(queue=queue, entry=entry, last_tick=tick)
    try:
        async with session_scope() as session:
            await session.execute(
                stmt.on_conflict_do_update(
                    index_elements=[SchedulerTick.queue, SchedulerTick.entry],
                    set_={"last_tick": func.greatest(SchedulerTick.last_tick, stmt.excluded.last_tick)},
                )
            )
    except DB_ERRORS as exc:
        log.warning("tick_store_unavailable", entry=entry, error=str(exc)[:200])
        return False
    return True


def merge(*records: dict[str, datetime]) -> dict[str, datetime]:
    """The later tick per entry across records."""
    merged: dict[str, datetime] = {}
    for rec in records:
        for entry, tick in rec.items():
            if entry not in merged or tick > merged[entry]:
                merged[entry] = tick
    return merged


__all__ = ["load", "merge", "record"]
