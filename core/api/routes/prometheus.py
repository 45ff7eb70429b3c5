"""``GET /metrics``: Prometheus text format (request latency, and the cluster's state read at scrape time).

Not under ``/v1`` and without a workspace: it carries counts only, no tenant data.
With ``metrics_bearer_token`` set, the scraper must send that bearer token.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.api.deps import get_redis
from core.config import get_settings
from core.db.engine import get_sessionmaker
from core.metrics import API, refresh_cluster
from core.plugins import get_registry

router = APIRouter(tags=["metrics"])


def _authorized(request: Request) -> bool:
    token = get_settings().metrics_bearer_token
    if token is None:
        return True
    sent = request.headers.get("authorization", "")
    return hmac.compare_digest(sent.encode(), f"Bearer {token.get_secret_value()}".encode())


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """The API registry in Prometheus' text format."""
    if not _authorized(request):
        return Response(
            "metrics need the bearer token set in METRICX_METRICS_BEARER_TOKEN\n", status_code=401
        )
    async with get_sessionmaker()() as session:
        await refresh_cluster(
            session, await get_redis(request), get_settings().queue_name, get_registry().providers
        )
    return Response(generate_latest(API), media_type=CONTENT_TYPE_LATEST)
