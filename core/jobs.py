"""The core's arq jobs; each is thin: the work lives in ``core.sync``, ``fanout`` and ``compaction``."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from core.enqueue import sync_mode
from core.errors import ConfigError
from core.providers import SyncMode
from core.state import RunStatus
from core.sync.engine import SyncJob, run_sync
from core.sync.fetch import default_work

if TYPE_CHECKING:
    from core.compaction import CompactionStats
    from core.fanout import FanoutStats
    from core.reconcile import ReconcileStats
    from core.upkeep import UpkeepStats


def parse_uuid(value: str, name: str) -> uuid.UUID:
    """A job argument as a UUID; a malformed one is a ConfigError naming the argument."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise ConfigError(f"{name} must be a UUID, got {str(value)[:60]!r}") from None


async def process_sync_job(
    ctx: dict[str, Any],
    connection_id: str,
    workspace_id: str,
    force_refresh: bool = False,
    backfill: bool = False,
    *,
    mode: str | None = None,
) -> dict[str, Any]:
    """Sync one connection: validate tokens, entities, metrics for the mode's window, status.

    ``mode`` (a :class:`~core.providers.SyncMode` value) is how core enqueues; the
    seed's flags still work without it: ``force_refresh`` selects attribution
    (re-pull the provider's window), ``backfill`` the 90-day history, neither realtime.
    """
    try:
        job = SyncJob(
            connection_id=parse_uuid(connection_id, "connection_id"),
            workspace_id=parse_uuid(workspace_id, "workspace_id"),
            mode=_mode(mode) if mode else sync_mode(bool(force_refresh), bool(backfill)),
            job_id=ctx["job_id"],
            job_try=ctx.get("job_try", 1),
        )
    except ConfigError as exc:
        return {"status": RunStatus.failed.value, "error_kind": exc.kind, "error": exc.message}
    return await run_sync(ctx, job, default_work)


def _mode(value: str) -> SyncMode:
    try:
        return SyncMode(value)
    except ValueError:
        modes = ", ".join(m.value for m in SyncMode)
        raise ConfigError(f"mode must be one of {modes}, got {str(value)[:40]!r}") from None


async def scheduled_realtime_sync(ctx: dict[str, Any], tick: str | None = None) -> FanoutStats:
    """Fan out a realtime ``process_sync_job`` to every active connection that is due."""
    from core.fanout import fan_out

    return await fan_out(ctx, SyncMode.realtime, tick)


async def scheduled_attribution_sync(ctx: dict[str, Any], tick: str | None = None) -> FanoutStats:
    """Fan out attribution-mode syncs (each provider's re-pull window) to every active connection."""
    from core.fanout import fan_out

    return await fan_out(ctx, SyncMode.attribution, tick)


async def scheduled_compaction(ctx: dict[str, Any], tick: str | None = None) -> CompactionStats:
    """Create the coming months' snapshot partitions, then fold 15-minute snapshots into hourly ones
    for every day before yesterday."""
    from core.compaction import compact_all
    from core.partitions import ensure_partitions

    await ensure_partitions()
    return await compact_all()


async def scheduled_reconcile(ctx: dict[str, Any], tick: str | None = None) -> ReconcileStats:
    """Queue the syncs that close coverage gaps (missed days, failed backfills, yesterday)."""
    from core.reconcile import reconcile

    return await reconcile(ctx, tick)


async def scheduled_token_upkeep(ctx: dict[str, Any], tick: str | None = None) -> UpkeepStats:
    """Refresh credentials before they expire; use refresh tokens a platform revokes when idle."""
    from core.upkeep import token_upkeep

    return await token_upkeep(ctx, tick)
