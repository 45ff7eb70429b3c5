"""Connections of a workspace: connect (validated by the provider), list, get, pause/resume, delete, sync."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import structlog
from arq.connections import ArqRedis
from fastapi import APIRouter, Body, Query, Request, status
from fastapi.responses import JSONResponse, Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.api.deps import (
    AuthHeader,
    ConnectionDep,
    ConnectionPath,
    ConnectionRef,
    HttpDep,
    PageDep,
    RedisDep,
    SessionDep,
    WorkspaceDep,
    WorkspacePath,
    resources,
)
from core.api.errors import ApiError, conflict, documented, provider_error
from core.api.guards import auth_guard
from core.api.schemas import (
    NO_NUL,
    ConnectionCreate,
    ConnectionCreated,
    ConnectionPublic,
    ConnectionReconnected,
    CoveragePublic,
    CredentialsIn,
    Page,
    SyncEnqueued,
    SyncRequest,
    WorkspaceSyncResult,
)
from core.api.sync_now import SyncTarget, claim_for_sync
from core.coverage import connection_coverage
from core.db.models import Connection
from core.enqueue import EnqueueResult, active_job, sync_request
from core.errors import MetricxError
from core.logging import REDACTED, SECRET_KEYS
from core.plugins import get_registry
from core.providers import Credentials, SyncMode
from core.services import (
    ConnectionDeleted,
    ConnectionExists,
    ConnectionNotFound,
    ProviderNotInstalled,
    WrongAccount,
    add_connection,
    enqueue_syncs,
    job_mode,
    replace_credentials,
    set_connection_status,
    validate_account,
)
from core.services import delete_connection as remove_connection
from core.state import ConnectionStatus, SyncStatus
from core.sync.requests import enqueue_claimed, request_syncs
from core.upkeep import credential_states

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/workspaces/{workspace_id}", tags=["connections"])
#: The sync-now route alone, mounted ahead of every other ``/v1`` route (core.api.app): the router
#: resolves it in one step instead of descending ``/v1`` and then this router, matching twice at each.
sync_now_router = APIRouter(prefix="/workspaces/{workspace_id}", tags=["connections"])


def public(connection: Connection) -> ConnectionPublic:
    """A connection as the API shows it: no credentials, secret-looking config values masked."""
    out = ConnectionPublic.model_validate(connection)
    out.config = {k: (REDACTED if SECRET_KEYS.search(k) else v) for k, v in (connection.config or {}).items()}
    return out


async def with_credential_states(items: list[ConnectionPublic]) -> list[ConnectionPublic]:
    """Fill each connection's ``credentials_state`` and ``credentials_expire_at`` (one query)."""
    states = await credential_states([c.id for c in items])
    for item in items:
        item.credentials_state, item.credentials_expire_at = states[item.id]
    return items


@router.post(
    "/connections",
    status_code=status.HTTP_201_CREATED,
    response_model=ConnectionCreated,
    responses=documented(409, 502, 503),
)
async def create(
    body: ConnectionCreate, workspace: WorkspaceDep, session: SessionDep, http: HttpDep, redis: RedisDep
) -> ConnectionCreated:
    """Connect a platform account: the provider checks the tokens and reads the account's timezone
    and currency; a history backfill is enqueued. The credentials are never returned."""
    await session.commit()  # no transaction stays open while the provider is called
    creds = Credentials(
        access_token=body.credentials.access_token,
        refresh_token=body.credentials.refresh_token,
        expires_at=body.credentials.expires_at,
        scopes=tuple(body.credentials.scopes),
    )
    try:
        validated = await validate_account(
            body.provider, body.external_account_id, creds, body.config, http=http, redis=redis
        )
        connection = await add_connection(
            session, workspace.id, body.external_account_id, validated, name=body.name, config=body.config
        )
    except ProviderNotInstalled as exc:
        raise ApiError(422, "provider_not_installed", exc.message) from None
    except ConnectionExists as exc:
        raise conflict("connection_exists", exc.message) from None
    except MetricxError as exc:
        raise provider_error(exc) from None
    await session.commit()
    backfill = None
    if body.backfill:
        [result] = await enqueue_syncs(session, redis, [connection], SyncMode.backfill)
        backfill = SyncEnqueued(**result, connection_id=connection.id, mode=SyncMode.backfill)
        await session.commit()
        await session.refresh(connection)
    return ConnectionCreated(**public(connection).model_dump(), backfill=backfill)


@router.get("/connections", response_model=Page[ConnectionPublic])
async def list_connections(
    workspace: WorkspaceDep,
    session: SessionDep,
    page: PageDep,
    provider: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
    connection_status: Annotated[
        Literal["active", "paused", "disconnected"] | None, Query(alias="status")
    ] = None,
) -> Page[ConnectionPublic]:
    """The workspace's connections with their sync status, oldest first."""
    where: list[Any] = [Connection.workspace_id == workspace.id]
    if provider:
        where.append(Connection.provider == provider)
    if connection_status:
        where.append(Connection.status == connection_status)
    total = await session.scalar(select(func.count()).select_from(Connection).where(*where)) or 0
    rows = await session.scalars(
        select(Connection)
        .where(*where)
        .order_by(Connection.created_at, Connection.id)
        .limit(page.limit)
        .offset(page.offset)
    )
    return page.page(await with_credential_states([public(c) for c in rows]), total)


async def _coverage(session: SessionDep, connection: Connection) -> CoveragePublic:
    provider = get_registry().providers.get(connection.provider)
    cov = await connection_coverage(session, connection, provider, datetime.now(UTC))
    return CoveragePublic.model_validate(cov.as_dict())


@router.get("/connections/{connection_id}", response_model=ConnectionPublic)
async def get(connection: ConnectionDep, session: SessionDep) -> ConnectionPublic:
    """One connection with its sync status fields and data coverage."""
    [out] = await with_credential_states([public(connection)])
    out.coverage = await _coverage(session, connection)
    return out


@router.get("/connections/{connection_id}/coverage", response_model=CoveragePublic)
async def coverage(connection: ConnectionDep, session: SessionDep) -> CoveragePublic:
    """Which days of the backfill horizon hold final data, and how many a queued sync will fetch."""
    return await _coverage(session, connection)


async def _set_status(
    session: SessionDep, connection: Connection, value: ConnectionStatus
) -> ConnectionPublic:
    try:
        await set_connection_status(session, connection, value)
    except ConnectionDeleted as exc:
        raise conflict("connection_disconnected", exc.message) from None
    return public(connection)


@router.post("/connections/{connection_id}/pause", response_model=ConnectionPublic, responses=documented(409))
async def pause(connection: ConnectionDep, session: SessionDep) -> ConnectionPublic:
    """Stop scheduled and manual syncs, and pushed data (store webhooks), until resumed (a sync already
    running finishes); the first sync after resuming catches up."""
    return await _set_status(session, connection, ConnectionStatus.paused)


@router.post(
    "/connections/{connection_id}/resume", response_model=ConnectionPublic, responses=documented(409)
)
async def resume(connection: ConnectionDep, session: SessionDep) -> ConnectionPublic:
    """Sync the connection again on schedule."""
    return await _set_status(session, connection, ConnectionStatus.active)


@router.delete("/connections/{connection_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_connection(
    connection: ConnectionDep,
    session: SessionDep,
    data: Annotated[
        Literal["keep", "delete"],
        Query(description="keep: stop syncing, forget the tokens, keep the synced data; delete: remove all."),
    ] = "keep",
) -> None:
    """Disconnect an account: no more syncs, tokens erased; its data is kept or removed as asked.
    A connection deleted with its data kept is connected again (same id, data back) by adding the
    same account or by giving it new credentials."""
    await remove_connection(session, connection, keep_data=data == "keep")


@router.put(
    "/connections/{connection_id}/credentials",
    response_model=ConnectionReconnected,
    responses=documented(404, 409, 502, 503),
)
async def put_credentials(
    body: CredentialsIn,
    connection: ConnectionDep,
    session: SessionDep,
    http: HttpDep,
    redis: RedisDep,
    catch_up: Annotated[bool, Query(description="Queue a sync of the days the connection missed.")] = True,
) -> ConnectionReconnected:
    """Reconnect: give the connection new credentials, keeping its id, data and sync history.

    The provider checks them against this connection's account (409 ``wrong_account`` if they
    reach another account or none; nothing changes then). The connection returns to ``idle`` (a
    deleted one to ``active``) and a sync of the days it missed is queued, not a new backfill."""
    creds = Credentials(
        access_token=body.access_token,
        refresh_token=body.refresh_token,
        expires_at=body.expires_at,
        scopes=tuple(body.scopes),
    )
    try:
        done = await replace_credentials(
            session,
            workspace_id=connection.workspace_id,
            connection_id=connection.id,
            provider=connection.provider,
            credentials=creds,
            http=http,
            redis=redis,
            catch_up=catch_up,
        )
    except ConnectionNotFound:
        raise ApiError(404, "connection_not_found", "connection not found") from None
    except WrongAccount as exc:
        raise conflict("wrong_account", exc.message) from None
    except ProviderNotInstalled as exc:
        raise ApiError(422, "provider_not_installed", exc.message) from None
    except MetricxError as exc:
        raise provider_error(exc) from None
    queued = None
    if done.catch_up is not None and done.catch_up_mode is not None:
        queued = SyncEnqueued(
            **done.catch_up,
            connection_id=connection.id,
            mode=job_mode(done.catch_up["job_id"], done.catch_up_mode),
        )
    out = public(done.connection).model_dump()
    return ConnectionReconnected(**out, catch_up=queued, days_missing=done.days_missing)


SyncBody = Annotated[SyncRequest, Body(default_factory=SyncRequest)]
RetryRejectedToken = Annotated[
    bool,
    Query(
        description="Sync a reconnect_required connection with its stored token anyway "
        "(the token was fixed on the platform)."
    ),
]


def unsyncable(ref: ConnectionRef | SyncTarget, retry_rejected_token: bool) -> ApiError | None:
    """The 409 a connection in this state answers a sync request with, if any."""
    if ref.status == ConnectionStatus.disconnected:
        return conflict(
            "connection_disconnected",
            "the connection was deleted; connect it again by giving it new credentials (PUT "
            f"/v1/workspaces/{ref.workspace_id}/connections/{ref.id}/credentials)",
        )
    if ref.status != ConnectionStatus.active:
        return conflict(f"connection_{ref.status}", f"the connection is {ref.status}; resume it first")
    if ref.sync_status == SyncStatus.reconnect_required and not retry_rejected_token:
        return conflict(
            "reconnect_required",
            "the platform rejected this connection's token, so a sync would fail again: give it a new token "
            f"(PUT /v1/workspaces/{ref.workspace_id}/connections/{ref.id}"
            f"/credentials, or `metricx connections reconnect {ref.id}`), which also catches up "
            "the days it missed; or, if the token was fixed on the platform, retry with "
            "?retry_rejected_token=true",
        )
    return None


@sync_now_router.post(
    "/connections/{connection_id}/sync",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SyncEnqueued,
    responses=documented(409),
)
async def sync_connection(
    request: Request,
    workspace_id: WorkspacePath,
    connection_id: ConnectionPath,
    body: SyncBody,
    retry_rejected_token: RetryRejectedToken = False,
    authorization: AuthHeader = None,
) -> Response:
    """Sync now: enqueue a sync in ``mode``, or return the sync already queued or running.

    A connection whose token the platform rejected (``reconnect_required``) answers 409: it needs a
    new token, unless ``retry_rejected_token`` says the stored one works again."""
    # The hot route (P7): three round trips, no session, no response-model pass (core.api.sync_now).
    guard = await auth_guard(request)
    await guard.check()
    redis = await resources(request).redis()  # not a dependency: one fewer for FastAPI to solve
    cid = str(connection_id)
    current = await active_job(redis, cid)
    job = None if current is not None else sync_request(cid, str(workspace_id), body.mode)
    target = await claim_for_sync(
        guard, authorization, workspace_id, connection_id, job.job_id if job else None, retry_rejected_token
    )
    refused = unsyncable(target, retry_rejected_token)
    if refused is not None:
        raise refused
    result: EnqueueResult
    if current is not None:
        result = {"job_id": current, "status": "already_queued"}
    elif job is not None and target.claim is not None:
        # Claimed and committed by the statement: the job goes out only now.
        result = await enqueue_claimed(redis, target.claim, job)
    else:  # not reached: a syncable connection is claimed by the statement that read it
        [result] = await request_syncs(redis, [(target.id, target.workspace_id)], body.mode)
    mode = job_mode(result["job_id"], body.mode)
    content = {"status": result["status"], "job_id": result["job_id"], "connection_id": cid, "mode": mode}
    return JSONResponse(content, status_code=status.HTTP_202_ACCEPTED)


async def sync_connection_ref(
    ref: ConnectionRef, session: AsyncSession, redis: ArqRedis, mode: SyncMode
) -> SyncEnqueued:
    """Sync now for a connection already read in ``session`` (the dashboard's button): the
    answers of :func:`sync_connection`, the claim in that session's transaction."""
    refused = unsyncable(ref, False)
    if refused is not None:
        raise refused
    [result] = await request_syncs(redis, [(ref.id, ref.workspace_id)], mode, session=session)
    return SyncEnqueued(**result, connection_id=ref.id, mode=job_mode(result["job_id"], mode))


@router.post("/sync", status_code=status.HTTP_202_ACCEPTED, response_model=WorkspaceSyncResult)
async def sync_workspace(
    workspace: WorkspaceDep, session: SessionDep, redis: RedisDep, body: SyncBody
) -> WorkspaceSyncResult:
    """Sync every active connection of the workspace; one result per connection."""
    connections = list(
        await session.scalars(
            select(Connection)
            .where(Connection.workspace_id == workspace.id, Connection.status == ConnectionStatus.active)
            .order_by(Connection.created_at, Connection.id)
        )
    )
    await session.commit()
    results = await enqueue_syncs(session, redis, connections, body.mode)
    return WorkspaceSyncResult(
        mode=body.mode,
        results=[
            SyncEnqueued(**r, connection_id=c.id, mode=job_mode(r["job_id"], body.mode))
            for c, r in zip(connections, results, strict=True)
        ],
    )
