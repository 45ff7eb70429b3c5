"""FastAPI dependencies as ``Annotated`` aliases: sessions, Redis, HTTP, the caller and its workspace."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, TypeVar

import httpx
from arq.connections import ArqRedis
from fastapi import Depends, Header, Path, Query, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.api.auth import (
    Principal,
    authenticate,
    require_operator,
    require_workspace,
)
from core.api.errors import not_found
from core.api.schemas import Page
from core.config import get_settings
from core.db.engine import get_sessionmaker
from core.db.models import Connection, Workspace
from core.redis import create_arq_pool

T = TypeVar("T")


class Resources:
    """Per-app clients, created on first use and closed when the app stops."""

    def __init__(self) -> None:
        self._redis: ArqRedis | None = None
        self._http: httpx.AsyncClient | None = None

    async def redis(self) -> ArqRedis:
        if self._redis is None:
            self._redis = await create_arq_pool()
        return self._redis

    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=get_settings().http_timeout_s, follow_redirects=False)
        return self._http

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None


def resources(request: Request) -> Resources:
    res: Resources = request.app.state.resources
    return res


async def get_session() -> AsyncIterator[AsyncSession]:
    """One session per request: committed when the handler returns (before the response), else rolled back.

    Handlers that call a provider commit first, so no transaction stays open across an API call.
    """
    async with get_sessionmaker()() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


async def get_redis(request: Request) -> ArqRedis:
    return await resources(request).redis()


def get_http(request: Request) -> httpx.AsyncClient:
    return resources(request).http()


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
RedisDep = Annotated[ArqRedis, Depends(get_redis)]
HttpDep = Annotated[httpx.AsyncClient, Depends(get_http)]
AuthHeader = Annotated[
    str | None, Header(alias="Authorization", description="Bearer <workspace API key or operator key>")
]


async def get_principal(request: Request, session: SessionDep, authorization: AuthHeader = None) -> Principal:
    """The caller; an address with too many failed attempts gets 429 before its key is even looked at."""
    from core.api.errors import ApiError
    from core.api.guards import auth_guard

    guard = await auth_guard(request)
    await guard.check()
    try:
        return await authenticate(session, authorization)
    except ApiError as exc:
        if exc.status_code == 401:
            await guard.record_failure()
        raise


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_operator(principal: PrincipalDep) -> Principal:
    require_operator(principal)
    return principal


OperatorDep = Annotated[Principal, Depends(get_operator)]
WorkspacePath = Annotated[uuid.UUID, Path(description="The workspace id.")]


async def get_workspace(
    principal: PrincipalDep, session: SessionDep, workspace_id: WorkspacePath
) -> Workspace:
    """The workspace in the URL, if the caller's key belongs to it (else 404)."""
    require_workspace(principal, workspace_id)
    workspace = await session.get(Workspace, workspace_id)
    if workspace is None:
        raise not_found("workspace")
    return workspace


async def get_workspace_or_operator(
    principal: PrincipalDep, session: SessionDep, workspace_id: WorkspacePath
) -> Workspace:
    """Like :func:`get_workspace`, and the operator may act on any workspace (API keys)."""
    require_workspace(principal, workspace_id, allow_operator=True)
    workspace = await session.get(Workspace, workspace_id)
    if workspace is None:
        raise not_found("workspace")
    return workspace


WorkspaceDep = Annotated[Workspace, Depends(get_workspace)]
WorkspaceAdminDep = Annotated[Workspace, Depends(get_workspace_or_operator)]


ConnectionPath = Annotated[uuid.UUID, Path(description="The connection id.")]


async def get_connection(
    principal: PrincipalDep, session: SessionDep, workspace_id: WorkspacePath, connection_id: ConnectionPath
) -> Connection:
    """The connection in the URL, only within the caller's workspace (else 404)."""
    # A workspace key exists only while its workspace does (deleted with it): no workspace read.
    require_workspace(principal, workspace_id)
    connection = await session.scalar(
        select(Connection).where(Connection.id == connection_id, Connection.workspace_id == workspace_id)
    )
    if connection is None:
        raise not_found("connection")
    return connection


ConnectionDep = Annotated[Connection, Depends(get_connection)]


@dataclass(frozen=True, slots=True)
class ConnectionRef:
    """The few columns of a connection a sync request needs (no ORM object)."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    status: str
    sync_status: str


class PageParams:
    """``?limit=&offset=`` of a list endpoint."""

    def __init__(
        self,
        limit: Annotated[int, Query(ge=1, le=200, description="Items per page.")] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000, description="Items to skip.")] = 0,
    ) -> None:
        self.limit = limit
        self.offset = offset

    def page(self, items: list[T], total: int) -> Page[T]:
        """A :class:`Page` of ``items`` (already limited) out of ``total``."""
        end = self.offset + len(items)
        return Page[T](
            items=items,
            total=total,
            limit=self.limit,
            offset=self.offset,
            next_offset=end if end < total else None,
        )


PageDep = Annotated[PageParams, Depends()]
