"""Connections of a workspace: connect (validated by the provider), list, get, pause/resume, delete, sync."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Body, Query, status
from sqlalchemy import func, select

from core.api.deps import (
    ConnectionDep,
    ConnectionRefDep,
    HttpDep,
    PageDep,
    RedisDep,
    SessionDep,
    WorkspaceDep,
)
from core.api.errors import ApiError, conflict, documented, provider_error
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
from core.coverage import connection_coverage
from core.db.models import Connection
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
from core.sync.requests import request_syncs
from core.upkeep import credential_states

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/workspaces/{workspace_id}", tags=["connections"])


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


@router.post(
    "/connections/{connection_id}/sync",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SyncEnqueued,
    responses=documented(409),
)
async def sync_connection(
    connection: ConnectionRefDep,
    session: SessionDep,
    redis: RedisDep,
    body: SyncBody,
    retry_rejected_token: Annotated[
        bool,
        Query(
            description="Sync a reconnect_required connection with its stored token anyway "
            "(the token was fixed on the platform)."
        ),
    ] = False,
) -> SyncEnqueued:
    """Sync now: enqueue a sync in ``mode``, or return the sync already queued or running.

    A connection whose token the platform rejected (``reconnect_required``) answers 409: it needs a
    new token, unless ``retry_rejected_token`` says the stored one works again."""
    if connection.status == ConnectionStatus.disconnected:
        raise conflict(
            "connection_disconnected",
            "the connection was deleted; connect it again by giving it new credentials (PUT "
            f"/v1/workspaces/{connection.workspace_id}/connections/{connection.id}/credentials)",
        )
    if connection.status != ConnectionStatus.active:
        raise conflict(
            f"connection_{connection.status}", f"the connection is {connection.status}; resume it first"
        )
    if connection.sync_status == SyncStatus.reconnect_required and not retry_rejected_token:
        raise conflict(
            "reconnect_required",
            "the platform rejected this connection's token, so a sync would fail again: give it a new token "
            f"(PUT /v1/workspaces/{connection.workspace_id}/connections/{connection.id}"
            f"/credentials, or `metricx connections reconnect {connection.id}`), which also catches up "
            "the days it missed; or, if the token was fixed on the platform, retry with "
            "?retry_rejected_token=true",
        )
    # The claim is written in the transaction that read the connection (and committed there).
    [result] = await request_syncs(
        redis, [(connection.id, connection.workspace_id)], body.mode, session=session
    )
    return SyncEnqueued(**result, connection_id=connection.id, mode=job_mode(result["job_id"], body.mode))


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
