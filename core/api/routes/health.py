"""Liveness (the process answers), readiness (PostgreSQL and Redis answer) and the queue's depth."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from core.api.deps import resources
from core.api.schemas import ApiVersionPublic, Health, QueueDepth, Readiness
from core.config import get_settings
from core.db.engine import get_sessionmaker
from core.lifecycle import describe
from core.plugins import get_registry

log = structlog.get_logger(__name__)
router = APIRouter(tags=["health"])
CHECK_TIMEOUT_S = 3.0


@router.get("/health", response_model=Health)
async def health() -> Health:
    """Liveness: the API process is up."""
    return Health(status="ok")


async def _database() -> None:
    async with get_sessionmaker()() as session:
        await session.execute(text("SELECT 1"))


async def _redis(request: Request) -> None:
    redis = await resources(request).redis()
    await redis.ping()


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(request: Request) -> JSONResponse:
    """Readiness: the database and Redis answer within a few seconds (else 503).

    Also lists each provider's platform API version and its sunset (informational: a provider
    near or past its sunset does not make the API unready, its syncs fail on their own).
    """
    checks: dict[str, str] = {}
    for name, probe in (("database", _database()), ("redis", _redis(request))):
        try:
            await asyncio.wait_for(probe, CHECK_TIMEOUT_S)
            checks[name] = "ok"
        except Exception as exc:  # any failure means "not ready"; the reason goes to the body and log
            checks[name] = f"unavailable: {type(exc).__name__}"
            log.warning("readiness_check_failed", check=name, error_type=type(exc).__name__)
    ok = all(v == "ok" for v in checks.values())
    today = datetime.now(UTC).date()
    api_versions = {
        name: ApiVersionPublic.model_validate(describe(provider, today))
        for name, provider in sorted(get_registry().providers.items())
    }
    body = Readiness(status="ok" if ok else "unavailable", checks=checks, api_versions=api_versions)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ok else 503)


@router.get("/health/queue", response_model=QueueDepth)
async def queue_depth(request: Request) -> QueueDepth:
    """Jobs due now on the arq queue and jobs deferred to later: what an autoscaler scales workers on.

    Counts only; no tenant data. KEDA's metrics-api trigger reads ``queued``.
    """
    import time

    redis = await resources(request).redis()
    queue = get_settings().queue_name
    now_ms = int(time.time() * 1000)
    queued = await redis.zcount(queue, "-inf", now_ms)
    deferred = await redis.zcount(queue, f"({now_ms}", "+inf")
    return QueueDepth(queue=queue, queued=int(queued), deferred=int(deferred))
