"""Plugin sync jobs through a public API: declare a :class:`SyncJobSpec`, receive a :class:`SyncContext`.

A plugin job (Shopify's store sync, any third party's) gets the same lock,
``sync_status`` tracking, ``sync_runs`` rows, retries and rate-limit deferrals
as the core's own syncs; it only supplies the work. What it may touch in the
database is its own tables, through :func:`plugin_session`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from redis.asyncio import Redis
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import get_settings
from core.db.engine import session_scope
from core.db.models import Connection
from core.enqueue import EnqueueResult, JobRequest, enqueue_many, get_arq_pool
from core.errors import ConfigError
from core.providers import AccountRef, Credentials, JobSpec, Provider, ProviderContext
from core.state import ConnectionStatus, SyncStatus, arq_max_tries
from core.sync import status
from core.sync.loading import Loaded, account_ref, refresh_account_facts, store_credentials
from core.sync.throttle import record_verified

log = structlog.get_logger(__name__)

SyncWork = Callable[["SyncContext"], Awaitable[None]]
PluginSyncRunner = Callable[
    [dict[str, Any], "SyncJobSpec", str, str, Mapping[str, Any]], Awaitable[dict[str, Any]]
]
#: The arq ctx key under which the worker puts the engine's runner of plugin sync jobs.
RUNNER_KEY = "run_plugin_sync"


def plugin_session() -> AbstractAsyncContextManager[AsyncSession]:
    """One short transaction (committed on success) for a plugin's *own* tables."""
    return session_scope()


@dataclass
class SyncContext:
    """What one try of a plugin sync job works with. The engine owns everything around it.

    ``stats`` counts what the try wrote (``rows``, ``entities``); it ends up in
    ``sync_runs`` and in the ``on_sync_finished`` hook.
    """

    account: AccountRef
    credentials: Credentials
    provider: Provider
    provider_context: ProviderContext
    job_id: str
    job_try: int
    options: Mapping[str, Any]
    stats: dict[str, Any]
    connection_id: uuid.UUID
    workspace_id: uuid.UUID
    _loaded: Loaded = field(repr=False)
    _run_id: uuid.UUID = field(repr=False)

    def add_rows(self, count: int) -> None:
        """Count rows this try wrote (shown in ``sync_runs.rows_written``)."""
        self.stats["rows"] += count

    async def progress(self, *, done: int | None = None, total: int | None = None) -> None:
        """Record progress on this try's ``sync_runs`` row: steps done / total, and the rows so far."""
        values: dict[str, Any] = {"rows_written": self.stats["rows"]}
        if done is not None:
            values["slices_done"] = done
        if total is not None:
            values["slices_total"] = total
        async with session_scope() as session:
            await status.update_run(session, self._run_id, **values)

    async def validate_credentials(self) -> None:
        """Check the tokens offline, then with the platform; store refreshed ones (the provider's own check).

        Raises the provider's :class:`~core.errors.AuthError` for tokens that no longer work,
        which the engine records as ``reconnect_required``.
        """
        self.provider.check_credentials(self.credentials)
        refreshed = await self.provider.validate_token(self.provider_context, self.account, self.credentials)
        if refreshed is not None:
            await store_credentials(self.connection_id, refreshed)
            self.credentials = self._loaded.credentials = refreshed

    async def update_account(self, *, name: str | None, timezone: str, currency: str | None) -> AccountRef:
        """Store the account's facts as the platform reports them; returns the refreshed account.

        Call it once the account was read with these credentials: that read is what lets the
        connection's account throttle scope be trusted (see core/HOOKS.md, throttle scopes).
        """
        await record_verified(self.provider_context.limiter, self._loaded.connection)
        await refresh_account_facts(self._loaded, name=name, timezone=timezone, currency=currency)
        self.account = account_ref(self._loaded.connection)
        return self.account


@dataclass(frozen=True, slots=True)
class SyncJobSpec:
    """A plugin's sync job: ``work`` runs inside the engine for one connection of ``provider``.

    ``name`` is the arq job name (unique across plugins). Job ids are
    ``{job_id_prefix}:{connection_id}:{slot}``; ``label`` is stored as the
    ``sync_runs.mode`` of its tries. At most one job of a spec is queued or
    running per connection (independently of the core's ad syncs). ``arguments``
    names extra positional job arguments (older enqueues passed options so).
    """

    name: str
    provider: str
    label: str
    work: SyncWork
    job_id_prefix: str
    arguments: tuple[str, ...] = ()
    max_tries: int | None = None
    timeout_s: int | None = None

    def job_spec(self) -> JobSpec:
        """The arq job to register through ``register_jobs``."""
        spec = self

        async def job(
            ctx: dict[str, Any], connection_id: str, workspace_id: str, *args: Any, **options: Any
        ) -> dict[str, Any]:
            # The worker hands the engine to plugin jobs through ctx, as it hands them http and settings.
            run: PluginSyncRunner | None = ctx.get(RUNNER_KEY)
            if run is None:
                raise ConfigError("plugin sync jobs run in metricx's worker (arq core.worker.WorkerSettings)")
            merged = {**dict(zip(spec.arguments, args, strict=False)), **options}
            return await run(ctx, spec, connection_id, workspace_id, merged)

        job.__name__ = job.__qualname__ = self.name.replace(".", "_")
        job.__doc__ = f"Run the {self.provider} plugin's {self.label!r} sync of one connection."
        # One call past its tries only closes a job whose every try was killed (core.state.CLOSING_TRIES).
        tries = arq_max_tries(self.max_tries or get_settings().max_tries)
        return JobSpec(self.name, job, max_tries=tries, timeout_s=self.timeout_s)

    def request(
        self,
        connection_id: str,
        workspace_id: str,
        *,
        options: Mapping[str, Any] | None = None,
        slot: str | None = None,
        defer_s: float = 0.0,
    ) -> JobRequest:
        """The job request of one sync of a connection (``slot``: a schedule tick; else unique now)."""
        slot = slot or str(int(datetime.now(UTC).timestamp() * 1000))
        return JobRequest(
            function=self.name,
            job_id=f"{self.job_id_prefix}:{connection_id}:{slot}",
            args=(connection_id, workspace_id),
            kwargs=dict(options or {}),
            defer_s=defer_s,
            # Its own active-job key: a plugin sync does not hide (or get hidden by) an ad-metrics sync.
            connection_id=self.active_for(connection_id),
        )

    def active_for(self, connection_id: str) -> str:
        """The connection's slot for this spec's one queued or running job."""
        return f"{connection_id}:{self.label}"


async def enqueue_plugin_sync(
    spec: SyncJobSpec,
    connection_id: str,
    workspace_id: str,
    *,
    options: Mapping[str, Any] | None = None,
    defer_s: float = 0.0,
    redis: Redis | None = None,
) -> EnqueueResult:
    """Enqueue ``spec``'s job for one connection, or return the one it already has queued or running."""
    conn = redis or await get_arq_pool()
    [result] = await enqueue_many(
        conn, [spec.request(str(connection_id), str(workspace_id), options=options, defer_s=defer_s)]
    )
    return result


async def enqueue_plugin_job(
    function: str,
    *args: Any,
    job_id: str,
    defer_s: float = 0.0,
    redis: Redis | None = None,
) -> EnqueueResult:
    """Enqueue a plugin's registered job (``JobSpec``) once per ``job_id``.

    A job id whose job is queued, running or keeps a result comes back ``already_queued``.
    ``args`` travel in Redis: pass ids (a row of the plugin's own table), never secrets or personal data.
    """
    conn = redis or await get_arq_pool()
    [result] = await enqueue_many(conn, [JobRequest(function, job_id, args=tuple(args), defer_s=defer_s)])
    return result


async def enqueue_plugin_syncs(
    spec: SyncJobSpec,
    targets: Sequence[AccountRef],
    *,
    options: Mapping[str, Any] | None = None,
    slot: str | None = None,
    defer_s: float = 0.0,
    redis: Redis | None = None,
) -> list[EnqueueResult]:
    """Enqueue ``spec``'s job for each account, or return the one it already has queued or running."""
    conn = redis or await get_arq_pool()
    requests = [
        spec.request(a.connection_id, a.workspace_id, options=options, slot=slot, defer_s=defer_s)
        for a in targets
    ]
    return await enqueue_many(conn, requests)


async def accounts_due(provider: str) -> list[AccountRef]:
    """The provider's connections a scheduled sync should run for now (active, not throttled, usable)."""
    now = datetime.now(UTC)
    async with session_scope() as session:
        rows = await session.scalars(
            select(Connection)
            .where(
                Connection.provider == provider,
                Connection.status == ConnectionStatus.active,
                Connection.sync_status != SyncStatus.reconnect_required,
                or_(Connection.rate_limited_until.is_(None), Connection.rate_limited_until <= now),
            )
            .order_by(Connection.id)
        )
        return [account_ref(c) for c in rows]


async def accounts_for(provider: str, external_account_id: str) -> list[AccountRef]:
    """Every active connection of ``provider`` to this account id, compared case-insensitively.

    For data the platform pushes (webhooks). Paused connections are left out like disconnected
    ones: pausing stops all data, pushed or pulled; the first sync after resuming catches up.
    """
    async with session_scope() as session:
        rows = await session.scalars(
            select(Connection)
            .where(
                Connection.provider == provider,
                func.lower(Connection.external_account_id) == external_account_id.lower(),
                Connection.status == ConnectionStatus.active,
            )
            .order_by(Connection.id)
        )
        return [account_ref(c) for c in rows]
