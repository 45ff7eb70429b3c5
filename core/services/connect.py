"""The OAuth connect flow: start (signed single-use state, PKCE), callback (code exchange, account
discovery, tokens stored encrypted), then listing and picking accounts (one connection each).

The platform's side is the provider's :class:`~core.oauth.OAuthConnector`; nothing here knows HTTP
routes or the terminal. Every failure is a :class:`~core.oauth.ConnectError` with a stable code, and a
failed flow keeps no token and creates no connection.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog
from redis.asyncio import Redis
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import get_settings
from core.crypto import decrypt, encrypt, keyed_digest
from core.db.engine import get_sessionmaker, session_scope
from core.db.models import Connection, ConnectSession, Credential
from core.errors import MetricxError
from core.oauth import AuthorizationRequest, ConnectError, OAuthConnector, normalize_account_id, pkce_pair
from core.plugins import get_registry
from core.providers import Credentials
from core.services.accounts import stored_account_id
from core.services.connections import add_connection, validate_account
from core.services.credentials import WrongAccount, replace_credentials
from core.state import ConnectionStatus

log = structlog.get_logger(__name__)

STATE_PURPOSE = "connect_state"
SIGNATURE_PURPOSE = "connect_state_signature"


class Status:
    pending = "pending"
    exchanging = "exchanging"
    authorized = "authorized"
    completed = "completed"
    failed = "failed"


@dataclass(frozen=True, slots=True)
class ConnectStart:
    """What the start of a flow hands out: the URL to open, and until when it works."""

    session_id: uuid.UUID
    authorization_url: str
    expires_at: datetime


def connector_for(provider: str) -> OAuthConnector:
    """The provider's connector; ConnectError ``connector_not_found`` (404) when it has none."""
    connector = get_registry().connectors.get(provider)
    if connector is None:
        available = ", ".join(sorted(get_registry().connectors)) or "none"
        raise ConnectError(
            f"provider {provider[:64]!r} has no connect flow (available: {available})",
            code="connector_not_found",
            status=404,
        )
    return connector


def redirect_uri(provider: str) -> str:
    """The callback URL registered with the platform's app."""
    return f"{get_settings().public_url.rstrip('/')}/v1/connect/{provider}/callback"


def _signature(nonce: str) -> str:
    return keyed_digest(nonce, purpose=SIGNATURE_PURPOSE)


def _new_state() -> str:
    nonce = secrets.token_urlsafe(24)
    return f"{nonce}.{_signature(nonce)}"


def _signed(state: str) -> bool:
    nonce, _, signature = state.partition(".")
    return bool(nonce and signature) and hmac.compare_digest(signature, _signature(nonce))


async def start_connect(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    api_key_id: uuid.UUID | None,
    provider: str,
    params: Mapping[str, str],
    reconnect: uuid.UUID | None = None,
) -> ConnectStart:
    """Begin a flow for the workspace and key: the authorization URL with a fresh state."""
    connector = connector_for(provider)
    checked = connector.start_params(params)
    await prune_connect_sessions(session)
    if reconnect is not None:
        target = await session.scalar(
            select(Connection.id).where(
                Connection.id == reconnect,
                Connection.workspace_id == workspace_id,
                Connection.provider == provider,
            )
        )
        if target is None:
            raise ConnectError("connection not found", code="connection_not_found", status=404)
    verifier, challenge = pkce_pair() if connector.uses_pkce else (None, None)
    state = _new_state()
    expires_at = datetime.now(UTC) + timedelta(seconds=get_settings().connect_state_ttl_s)
    row = ConnectSession(
        workspace_id=workspace_id,
        api_key_id=api_key_id,
        provider=provider,
        state_digest=keyed_digest(state, purpose=STATE_PURPOSE),
        status=Status.pending,
        params=checked,
        code_verifier_enc=encrypt(verifier),
        reconnect_connection_id=reconnect,
        accounts=[],
        expires_at=expires_at,
    )
    session.add(row)
    await session.flush()
    url = connector.authorization_url(
        AuthorizationRequest(state, redirect_uri(provider), challenge, dict(checked))
    )
    log.info("connect_started", provider=provider, workspace_id=str(workspace_id), session_id=str(row.id))
    return ConnectStart(row.id, url, expires_at)


async def prune_connect_sessions(session: AsyncSession) -> None:
    """Forget the tokens of flows past their time (never picked), and flows older than a week."""
    now = datetime.now(UTC)
    await session.execute(
        update(ConnectSession)
        .where(ConnectSession.expires_at <= now, ConnectSession.access_token_enc.is_not(None))
        .values(access_token_enc=None, refresh_token_enc=None, code_verifier_enc=None)
    )
    await session.execute(delete(ConnectSession).where(ConnectSession.created_at < now - timedelta(days=7)))


async def _claim(provider: str, state: str) -> ConnectSession:
    """Take the flow's state once (committed at once, so a replay finds it used)."""
    if not state or len(state) > 200 or not _signed(state):
        raise ConnectError(
            "this sign-in link is not valid (its state was not issued here); start connecting again",
            code="invalid_state",
        )
    digest = keyed_digest(state, purpose=STATE_PURPOSE)
    async with session_scope() as session:
        row: ConnectSession | None = await session.scalar(
            update(ConnectSession)
            .where(
                ConnectSession.state_digest == digest,
                ConnectSession.provider == provider,
                ConnectSession.status == Status.pending,
            )
            .values(status=Status.exchanging)
            .returning(ConnectSession)
        )
        if row is None:
            used = await session.scalar(
                select(ConnectSession.id).where(
                    ConnectSession.state_digest == digest, ConnectSession.provider == provider
                )
            )
            if used is not None:
                raise ConnectError(
                    "this sign-in link was already used; start connecting again", code="state_used"
                )
            raise ConnectError(
                "this sign-in link is not valid for this provider; start connecting again",
                code="invalid_state",
            )
        expired = row.expires_at <= datetime.now(UTC)
        if expired:
            row.status, row.error_code = Status.failed, "state_expired"
            await session.flush()
        session.expunge(row)
    if expired:
        raise ConnectError("this sign-in link has expired; start connecting again", code="state_expired")
    return row


async def _fail(row_id: uuid.UUID, code: str) -> None:
    async with session_scope() as session:
        await session.execute(
            update(ConnectSession)
            .where(ConnectSession.id == row_id)
            .values(status=Status.failed, error_code=code[:32], code_verifier_enc=None)
        )


async def complete_callback(
    http: httpx.AsyncClient, provider: str, query: Mapping[str, str]
) -> ConnectSession:
    """Handle the platform's redirect: state, denial, signature, code exchange, discovery, storage."""
    connector = connector_for(provider)
    row = await _claim(provider, query.get("state", ""))
    try:
        if query.get("error"):
            raise ConnectError(
                "access was not granted at the platform (you chose Deny); nothing was connected",
                code="access_denied",
            )
        connector.check_callback(query, row.params)
        code = query.get("code", "")
        if not code:
            raise ConnectError("the platform sent no authorization code", code="invalid_request")
        credentials = await connector.exchange_code(
            http,
            code=code,
            redirect_uri=redirect_uri(provider),
            code_verifier=decrypt(row.code_verifier_enc),
            params=row.params,
        )
        accounts = await connector.discover_accounts(http, credentials, row.params)
    except ConnectError as exc:
        await _fail(row.id, exc.code)
        log.info("connect_failed", provider=provider, session_id=str(row.id), code=exc.code)
        raise
    except MetricxError as exc:
        await _fail(row.id, exc.kind)
        raise
    found = [_account_json(provider, a) for a in accounts]
    async with session_scope() as session:
        stored = await session.get(ConnectSession, row.id)
        assert stored is not None
        stored.status = Status.authorized
        stored.access_token_enc = encrypt(credentials.access_token)
        stored.refresh_token_enc = encrypt(credentials.refresh_token)
        stored.token_expires_at = credentials.expires_at
        stored.scopes = " ".join(credentials.scopes) or None
        stored.code_verifier_enc = None
        stored.accounts = found
        stored.expires_at = datetime.now(UTC) + timedelta(seconds=get_settings().connect_session_ttl_s)
        await session.flush()
        session.expunge(stored)
    if stored.reconnect_connection_id is not None:
        try:
            await _reconnect(http, stored, credentials)
        except WrongAccount as exc:
            await _fail(row.id, "wrong_account")
            log.info("connect_failed", provider=provider, session_id=str(row.id), code="wrong_account")
            raise ConnectError(exc.message, code="wrong_account", status=409) from None
    log.info("connect_authorized", provider=provider, session_id=str(row.id), accounts=len(found))
    return stored


def _account_json(provider: str, account: Any) -> dict[str, Any]:
    return {
        "external_account_id": normalize_account_id(
            get_registry().providers.get(provider), account.external_account_id
        ),
        "name": account.name,
        "currency": account.currency,
        "timezone": account.timezone,
        "config": dict(account.config),
        "connectable": account.connectable,
        "note": account.note,
    }


def _credentials_dict(credentials: Credentials, grant_id: uuid.UUID) -> dict[str, Any]:
    return {
        "access_token": credentials.access_token,
        "refresh_token": credentials.refresh_token,
        "expires_at": credentials.expires_at,
        "scopes": list(credentials.scopes),
        "grant_id": grant_id,
    }


async def _reconnect(http: httpx.AsyncClient, row: ConnectSession, credentials: Credentials) -> None:
    """``reconnect=<id>``: the new tokens go to that connection (the reconnect service checks they
    reach its account and queues the catch-up of the days it missed), and to every other connection
    that shared its old grant and whose account the new tokens reach: one login fixes all the
    accounts one token covered. ``row`` is the flow, detached; it is marked completed."""
    assert row.reconnect_connection_id is not None
    async with get_sessionmaker()() as session:  # replace_credentials commits as it goes
        old_grant = await session.scalar(
            select(Credential.grant_id).where(Credential.connection_id == row.reconnect_connection_id)
        )
        targets = [row.reconnect_connection_id]
        siblings: list[uuid.UUID] = []
        if old_grant is not None:
            reached = {a["external_account_id"] for a in row.accounts}
            shared = await session.execute(
                select(Connection.id, Connection.external_account_id)
                .join(Credential, Credential.connection_id == Connection.id)
                .where(
                    Credential.grant_id == old_grant,
                    Connection.workspace_id == row.workspace_id,
                    Connection.provider == row.provider,
                    Connection.id != row.reconnect_connection_id,
                    Connection.status != ConnectionStatus.disconnected,
                )
                .order_by(Connection.created_at)
            )
            for connection_id, account in shared:
                siblings.append(connection_id)
                if account in reached:
                    targets.append(connection_id)
        await session.commit()
        renewed = []
        for connection_id in targets:
            try:
                await replace_credentials(
                    session,
                    workspace_id=row.workspace_id,
                    connection_id=connection_id,
                    provider=row.provider,
                    credentials=_credentials_dict(credentials, row.id),
                    http=http,
                )
            except WrongAccount:
                if connection_id == row.reconnect_connection_id:
                    raise
                continue  # a sibling the new login cannot sync keeps its old credentials
            renewed.append(connection_id)
        # Connections that shared the old login but not this one: each needs its own reconnect.
        left = [str(c) for c in siblings if c not in renewed]
        row.params = {**row.params, "reconnected": [str(t) for t in renewed], "not_reconnected": left}
        row.status = Status.completed
        row.access_token_enc = row.refresh_token_enc = None
        await session.execute(
            update(ConnectSession)
            .where(ConnectSession.id == row.id)
            .values(params=row.params, status=row.status, access_token_enc=None, refresh_token_enc=None)
        )
        await session.commit()


async def authorized_session(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    api_key_id: uuid.UUID | None,
    provider: str,
    session_id: uuid.UUID | None,
    check_key: bool = True,
) -> ConnectSession:
    """The workspace's authorized flow (only for the key that started it, unless ``check_key`` is
    False: the operator's CLI), else 404 / 409."""
    row = None
    if session_id is not None:
        row = await session.scalar(
            select(ConnectSession).where(
                ConnectSession.id == session_id,
                ConnectSession.workspace_id == workspace_id,
                ConnectSession.provider == provider,
            )
        )
    if row is None or (check_key and row.api_key_id is not None and row.api_key_id != api_key_id):
        raise ConnectError("connect session not found", code="connect_session_not_found", status=404)
    if row.status != Status.authorized:
        raise ConnectError(
            f"this connect session is {row.status}; start connecting again",
            code="connect_session_closed",
            status=409,
        )
    if row.expires_at <= datetime.now(UTC):
        raise ConnectError(
            "this connect session has expired; start connecting again",
            code="connect_session_expired",
            status=409,
        )
    return row


async def accounts_found(session: AsyncSession, row: ConnectSession) -> list[dict[str, Any]]:
    """The flow's accounts, each with ``already_connected`` (and its connection id) in this workspace."""
    ids = [a["external_account_id"] for a in row.accounts]
    existing = dict(
        (
            await session.execute(
                select(Connection.external_account_id, Connection.id).where(
                    Connection.workspace_id == row.workspace_id,
                    Connection.provider == row.provider,
                    Connection.external_account_id.in_(ids),
                )
            )
        ).all()
    )
    return [
        {
            **{k: v for k, v in a.items() if k != "config"},
            "already_connected": a["external_account_id"] in existing,
            "connection_id": existing.get(a["external_account_id"]),
        }
        for a in row.accounts
    ]


async def pick_accounts(
    session: AsyncSession,
    row: ConnectSession,
    account_ids: Sequence[str],
    *,
    http: httpx.AsyncClient,
    redis: Redis,
) -> list[Connection]:
    """One connection per picked account, each validated by the provider, all sharing the grant."""
    by_id = {a["external_account_id"]: a for a in row.accounts}
    wanted = list(dict.fromkeys(stored_account_id(row.provider, raw) for raw in account_ids))
    unknown = [a for a in wanted if a not in by_id]
    if not wanted or unknown:
        raise ConnectError(
            "pick accounts this connect session found "
            f"(not found: {', '.join(unknown)[:200] or 'none given'})",
            code="unknown_account",
            status=422,
        )
    blocked = [a for a in wanted if not by_id[a]["connectable"]]
    if blocked:
        raise ConnectError(
            f"account {blocked[0]} cannot be connected: {by_id[blocked[0]].get('note') or 'not syncable'}",
            code="account_not_connectable",
            status=422,
        )
    credentials = Credentials(
        access_token=decrypt(row.access_token_enc),
        refresh_token=decrypt(row.refresh_token_enc),
        expires_at=row.token_expires_at,
        scopes=tuple((row.scopes or "").split()),
    )
    grant_id, workspace_id, provider = row.id, row.workspace_id, row.provider
    await session.commit()  # no transaction stays open while the provider is called
    created: list[Connection] = []
    for account_id in wanted:
        account = by_id[account_id]
        config = dict(account["config"])
        validated = await validate_account(provider, account_id, credentials, config, http=http, redis=redis)
        connection = await add_connection(
            session,
            workspace_id,
            account_id,
            validated,
            name=account["name"],
            config=config,
            grant_id=grant_id,
        )
        created.append(connection)
    await session.execute(
        update(ConnectSession)
        .where(ConnectSession.id == grant_id)
        .values(status=Status.completed, access_token_enc=None, refresh_token_enc=None)
    )
    await session.flush()
    log.info("connect_completed", provider=provider, session_id=str(grant_id), connections=len(created))
    return created
