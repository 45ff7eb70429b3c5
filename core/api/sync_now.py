"""``POST .../connections/{id}/sync`` (sync now), the API's hot route: the caller's key, the
connection and its claim in one PostgreSQL statement, without a transaction around it.

A request costs three round trips: the connection's active job (Redis), one autocommit
statement (PostgreSQL), the enqueue (Redis, one Lua call). The statement reads the key (live,
unrevoked: revoking still takes effect at once, nothing is cached) and the connection only within
the key's own workspace, and claims the connection (``queued`` for the new job, row locked for
the read of what it showed before) only when it may be synced and Redis showed no sync queued or
running. A connection with one is only read (no lock, no write), as before. The answers and their
order are those of the dependencies it replaces (429, 401, 403, 404, 409), after FastAPI's own
validation of the path, query and body (422). One difference: a well-formed JSON body that does not
validate (an unknown ``mode``) or a bad ``retry_rejected_token`` is now a 422 before the key is
looked at (it was a 401/404 first); malformed JSON and bad ids were 422 first already.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from core.api.auth import Principal, bearer_token, is_operator, require_workspace, unknown_key
from core.api.errors import ApiError, not_found
from core.api.guards import AuthGuard
from core.db.engine import get_engine
from core.services import hash_key
from core.state import ConnectionStatus, SyncStatus
from core.sync.status import Claim

# The key's workspace; the connection's columns when it is in the URL's workspace and the key's,
# locked; the claim when the connection is active and not reconnect_required (unless $5).
_KEY_CONNECTION_CLAIM = f"""
WITH k AS (
  SELECT workspace_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL
), prev AS (
  SELECT c.id, c.status, c.sync_status, c.current_job_id
  FROM connections c JOIN k ON c.workspace_id = k.workspace_id
  WHERE c.id = $2 AND c.workspace_id = $3
  FOR UPDATE OF c
), claimed AS (
  UPDATE connections u SET sync_status = '{SyncStatus.queued.value}', current_job_id = $4
  FROM prev
  WHERE u.id = prev.id AND prev.status = '{ConnectionStatus.active.value}'
    AND (prev.sync_status <> '{SyncStatus.reconnect_required.value}' OR $5)
  RETURNING u.id
)
SELECT k.workspace_id, prev.id, prev.status, prev.sync_status, prev.current_job_id,
       EXISTS (SELECT 1 FROM claimed)
FROM k LEFT JOIN prev ON true
"""

# The same read when Redis already shows a sync for the connection: nothing to claim or lock.
_KEY_CONNECTION = """
SELECT k.workspace_id, c.id, c.status, c.sync_status, c.current_job_id, false
FROM api_keys k
LEFT JOIN connections c ON c.id = $2 AND c.workspace_id = $3 AND c.workspace_id = k.workspace_id
WHERE k.key_hash = $1 AND k.revoked_at IS NULL
"""


@dataclass(frozen=True, slots=True)
class SyncTarget:
    """The connection in the URL as the statement found it (before any claim), and the claim."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    status: str
    sync_status: str
    claim: Claim | None


async def _run(statement: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """One statement on a pooled connection, straight on asyncpg: no BEGIN, no COMMIT (the
    statement is its own transaction), none of SQLAlchemy's statement and result layers. A
    connection that broke under it is invalidated, as SQLAlchemy would."""
    async with get_engine().connect() as conn:
        raw = await conn.get_raw_connection()
        driver: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
        try:
            row = await driver.fetchrow(statement, *params)
        except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError):
            await conn.invalidate()
            raise
    return None if row is None else tuple(row)


async def claim_for_sync(
    guard: AuthGuard,
    authorization: str | None,
    workspace_id: uuid.UUID,
    connection_id: uuid.UUID,
    job_id: str | None,
    retry_rejected_token: bool,
) -> SyncTarget:
    """Authenticate, find the connection in the caller's workspace and, with ``job_id`` (no sync
    queued or running in Redis), claim it for that job if it may be synced, in one statement.

    Raises what the separate dependencies raised after the throttle's check (429, the caller's
    :meth:`AuthGuard.check`): 401 (no, unknown or revoked key; counted as a failure), 403 (the
    operator key), 404 (another workspace, or no such connection in this one).
    """
    try:
        token = bearer_token(authorization)
    except ApiError:
        await guard.record_failure()
        raise
    if is_operator(token):
        require_workspace(Principal(operator=True), workspace_id)
    if job_id is None:
        row = await _run(_KEY_CONNECTION, (hash_key(token), connection_id, workspace_id))
    else:
        params = (hash_key(token), connection_id, workspace_id, job_id, retry_rejected_token)
        row = await _run(_KEY_CONNECTION_CLAIM, params)
    if row is None:
        await guard.record_failure()
        raise unknown_key()
    key_workspace, cid, conn_status, sync_status, previous_job, claimed = row
    require_workspace(Principal(operator=False, workspace_id=key_workspace), workspace_id)
    if cid is None:
        raise not_found("connection")
    claim = Claim(cid, job_id, sync_status, previous_job) if claimed and job_id is not None else None
    return SyncTarget(cid, workspace_id, conn_status, sync_status, claim)
