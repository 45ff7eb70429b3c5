"""The engine side of plugin sync jobs: one try of a :class:`~core.sync.context.SyncJobSpec`'s work.

The worker puts :func:`run_plugin_sync` into every job's ctx (``RUNNER_KEY``), so
the public :mod:`core.sync.context` never imports the engine.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from core.enqueue import EnqueueResult, enqueue_many
from core.errors import ConfigError
from core.jobs import parse_uuid
from core.state import RunStatus
from core.sync.context import SyncContext, SyncJobSpec
from core.sync.engine import SyncJob, run_sync
from core.sync.loading import Loaded, account_ref, provider_context


async def run_plugin_sync(
    ctx: dict[str, Any], spec: SyncJobSpec, connection_id: str, workspace_id: str, options: Mapping[str, Any]
) -> dict[str, Any]:
    """One try of a plugin sync job: the engine's lock, status, runs and retries around ``spec.work``."""
    try:
        job = SyncJob(
            connection_id=parse_uuid(connection_id, "connection_id"),
            workspace_id=parse_uuid(workspace_id, "workspace_id"),
            mode=spec.label,
            job_id=ctx["job_id"],
            job_try=ctx.get("job_try", 1),
            active_for=spec.active_for(connection_id),
            max_tries=spec.max_tries,
        )
    except ConfigError as exc:
        return {"status": RunStatus.failed.value, "error_kind": exc.kind, "error": exc.message}

    async def requeue(defer_s: float) -> EnqueueResult:
        request = spec.request(connection_id, workspace_id, options=options, defer_s=defer_s)
        [result] = await enqueue_many(ctx["redis"], [request])
        return result

    async def work(job: SyncJob, ctx: dict[str, Any], loaded: Loaded, run_id: uuid.UUID) -> None:
        if loaded.provider.name != spec.provider:
            raise ConfigError(f"{spec.name} needs a {spec.provider} connection, not {loaded.provider.name!r}")
        pctx = provider_context(ctx, loaded)
        sctx = SyncContext(
            account=account_ref(loaded.connection),
            credentials=loaded.credentials,
            provider=loaded.provider,
            provider_context=pctx,
            job_id=job.job_id,
            job_try=job.job_try,
            options=dict(options),
            stats=job.stats,
            connection_id=job.connection_id,
            workspace_id=job.workspace_id,
            _loaded=loaded,
            _run_id=run_id,
        )
        try:
            await spec.work(sctx)
        finally:
            job.stats.update(pctx.limiter.stats())

    job.requeue = requeue
    return await run_sync(ctx, job, work)
