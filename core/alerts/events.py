"""Alert events, called by the sync engine after it wrote a connection's status.

Each call records what changed (``alert_states``: a condition is announced once,
not on every failing sync), writes one ``alert_deliveries`` row per webhook and
enqueues ``deliver_alert`` jobs. It never talks to a receiver: a slow or failing
endpoint cannot slow a sync. Its own failures are logged, never raised into the sync.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

import core.keys as keys
from core.db.engine import session_scope
from core.db.models import AlertDelivery, AlertWebhook, Connection
from core.enqueue import JobRequest, enqueue_many

log = structlog.get_logger(__name__)

#: Event types (the ``type`` field and the ``X-Metricx-Event`` header).
RECONNECT_REQUIRED = "connection.reconnect_required"
ERROR = "connection.error"
RECOVERED = "connection.recovered"
TOKEN_EXPIRING = "connection.token_expiring"
EVENT_TYPES = (RECONNECT_REQUIRED, ERROR, RECOVERED, TOKEN_EXPIRING)

_ENTER = text(
    "INSERT INTO alert_states (connection_id, condition) VALUES (:c, :cond) "
    "ON CONFLICT (connection_id) DO UPDATE SET condition = excluded.condition, updated_at = now() "
    "WHERE alert_states.condition <> excluded.condition RETURNING connection_id"
)
_RECOVER = text(
    "UPDATE alert_states SET condition = 'ok', updated_at = now() "
    "WHERE connection_id = :c AND condition <> 'ok' RETURNING connection_id"
)
_EXPIRY = text(
    "INSERT INTO alert_states (connection_id, condition, token_expiry_alerted) VALUES (:c, 'ok', :e) "
    "ON CONFLICT (connection_id) DO UPDATE SET token_expiry_alerted = excluded.token_expiry_alerted "
    "WHERE alert_states.token_expiry_alerted IS DISTINCT FROM excluded.token_expiry_alerted "
    "RETURNING connection_id"
)


def deliver_request(delivery_id: uuid.UUID, attempt: int, defer_s: float = 0.0) -> JobRequest:
    """The ``deliver_alert`` job of one attempt (only the delivery's id travels: no payload, no secret)."""
    return JobRequest(
        "deliver_alert",
        f"{keys.ALERT_JOB_PREFIX}{delivery_id}:{attempt}",
        args=(str(delivery_id),),
        defer_s=defer_s,
    )


def payload(event: str, connection: Connection, **details: Any) -> dict[str, Any]:
    """The JSON body of an event (ids and facts; messages were scrubbed of secrets by the engine)."""
    return {
        "id": str(uuid.uuid4()),
        "type": event,
        "created_at": datetime.now(UTC).isoformat(),
        "workspace_id": str(connection.workspace_id),
        "connection": {
            "id": str(connection.id),
            "provider": connection.provider,
            "external_account_id": connection.external_account_id,
            "name": connection.name,
        },
        **details,
    }


async def _record(session: AsyncSession, connection: Connection, body: dict[str, Any]) -> list[uuid.UUID]:
    hooks = await session.scalars(
        select(AlertWebhook.id).where(AlertWebhook.workspace_id == connection.workspace_id)
    )
    ids = []
    for hook_id in hooks.all():
        delivery = AlertDelivery(
            workspace_id=connection.workspace_id,
            webhook_id=hook_id,
            event=body["type"],
            connection_id=connection.id,
            payload=body,
            status="pending",
        )
        session.add(delivery)
        await session.flush()
        ids.append(delivery.id)
    return ids


async def _emit(
    redis: Redis, connection: Connection, guard: Any, params: dict[str, Any], body: dict[str, Any]
) -> int:
    try:
        async with session_scope() as session:
            if (await session.execute(guard, params)).first() is None:
                return 0  # already announced
            deliveries = await _record(session, connection, body)
        if deliveries:
            await enqueue_many(redis, [deliver_request(d, 1) for d in deliveries])
            log.info("alert_enqueued", event=body["type"], deliveries=len(deliveries))
        return len(deliveries)
    except (SQLAlchemyError, RedisError, OSError) as exc:
        log.error("alert_not_recorded", event=body["type"], error=str(exc)[:200])
        return 0


async def sync_failed(
    redis: Redis, connection: Connection, sync_status: str, error_kind: str, message: str
) -> int:
    """After a terminal failure: announce ``reconnect_required`` / ``error`` once per episode."""
    event = RECONNECT_REQUIRED if sync_status == "reconnect_required" else ERROR
    body = payload(event, connection, sync_status=sync_status, error_kind=error_kind, message=message)
    return await _emit(redis, connection, _ENTER, {"c": connection.id, "cond": sync_status}, body)


async def sync_succeeded(redis: Redis, connection: Connection) -> int:
    """After a successful sync: announce ``recovered`` if an error or reconnect was announced."""
    body = payload(RECOVERED, connection, sync_status="idle")
    return await _emit(redis, connection, _RECOVER, {"c": connection.id}, body)


async def recovered(session: AsyncSession, connection: Connection) -> list[uuid.UUID]:
    """The ``recovered`` deliveries of a connection whose announced error the engine just turned
    ``ok`` (in its finishing transaction); enqueue them with :func:`enqueue_deliveries` after it."""
    return await _record(session, connection, payload(RECOVERED, connection, sync_status="idle"))


async def enqueue_deliveries(redis: Redis, deliveries: list[uuid.UUID], event: str) -> None:
    """Enqueue recorded deliveries' jobs; a Redis failure is logged, never raised into the sync."""
    try:
        await enqueue_many(redis, [deliver_request(d, 1) for d in deliveries])
        log.info("alert_enqueued", event=event, deliveries=len(deliveries))
    except (RedisError, OSError) as exc:
        log.error("alert_not_recorded", event=event, error=str(exc)[:200])


async def token_checked(
    redis: Redis, connection: Connection, expires_at: datetime | None, within_days: int
) -> int:
    """Announce a token that expires within ``within_days`` (once per expiry date)."""
    if expires_at is None or expires_at - datetime.now(UTC) > timedelta(days=within_days):
        return 0
    body = payload(TOKEN_EXPIRING, connection, expires_at=expires_at.isoformat())
    return await _emit(redis, connection, _EXPIRY, {"c": connection.id, "e": expires_at}, body)
