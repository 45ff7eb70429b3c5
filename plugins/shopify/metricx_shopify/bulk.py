"""Shopify bulk operations: run one, wait for it, and stream its JSONL result, reassembled by ``__parentId``.

A bulk query (https://shopify.dev/docs/api/usage/bulk-operations/queries) runs in the background
on Shopify: ``bulkOperationRunQuery`` starts it, ``node(id:)`` says how it goes, and a finished
operation's ``url`` is a JSONL file, one JSON object per line; the nodes of a nested connection (an
order's ``lineItems``) are lines of their own carrying ``__parentId``, the GID of their parent.
:func:`run_bulk_query` runs the whole lifecycle:

- **one operation per shop**: ``OPERATION_IN_PROGRESS`` means another is running. One with the
  same query is this sync's own earlier try (a killed worker): it is adopted. Another is waited for
  up to ``bulk_busy_wait_s``, then the sync is deferred (RateLimited) with a message saying why;
- **polling** every ``bulk_poll_s`` until the operation ends (``bulk_max_wait_s`` at most);
- **the file is streamed** (``groupObjects: true``, so the children follow their parent):
  :func:`reassemble` keeps only the current order in memory, whatever the file's size;
- **an expired URL** (the storage answers 403) is asked for again: a new poll hands out a fresh one;
- **FAILED**: ``ACCESS_DENIED`` is a ConfigError (the app lacks a scope); with a ``partialDataUrl``
  the orders that are complete in it are yielded (never the last one, which may be cut off), then
  :class:`BulkPartialData` (transient: the sync is retried) says how far it got; without one a
  TransientError. ``CANCELED`` / ``EXPIRED`` are transient too.

Shopify refuses a connection inside a list field in a bulk query, so an order's refund
transactions (``refunds`` is a list, its ``transactions`` a connection) are read through the
order's own ``transactions`` list there (see :mod:`metricx_shopify.queries`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import httpx
import structlog

from core import (
    ConfigError,
    MetricxError,
    PayloadError,
    PermanentError,
    ProviderAPI,
    RateLimited,
    RetryPolicy,
    TransientError,
    load_json,
)

if TYPE_CHECKING:
    from metricx_shopify.client import ShopifyClient

log = structlog.get_logger(__name__)

RUN = (
    "mutation BulkRun($query: String!) { bulkOperationRunQuery(query: $query, groupObjects: true) { "
    "bulkOperation { id status } userErrors { field message code } } }"
)
_FIELDS = "id status errorCode objectCount rootObjectCount fileSize url partialDataUrl query completedAt"
POLL = f"query BulkPoll($id: ID!) {{ node(id: $id) {{ ... on BulkOperation {{ {_FIELDS} }} }} }}"
CURRENT = f"query BulkCurrent {{ currentBulkOperation(type: QUERY) {{ {_FIELDS} }} }}"
ACTIVE = frozenset({"CREATED", "RUNNING", "CANCELING"})
#: How often an expired download URL is asked for again before the sync gives up (and retries).
URL_RENEWALS = 3


class BulkUrlExpired(PermanentError):
    """The result file's signed URL expired (its storage answers 403): poll for a fresh one."""


class BulkPartialData(TransientError):
    """A bulk operation failed after part of its data: the complete part was handed over."""


class BulkFileAPI(ProviderAPI):
    """How ProviderHTTP reads a bulk result file (a signed storage URL: no Shopify token, no cost)."""

    name = "Shopify bulk file"

    def __init__(self, retries: int, backoff_s: float) -> None:
        self.policy = RetryPolicy(transient_retries=retries, backoff_s=backoff_s)

    def classify(self, response: httpx.Response) -> MetricxError | None:
        if response.status_code == 403:
            return BulkUrlExpired("the bulk operation's result URL expired")
        if response.status_code == 404:
            return TransientError("the bulk operation's result file is not there (HTTP 404)")
        return super().classify(response)


#: GID type of a child line -> the connection it fills on its parent, as the paginated query's ``nodes``.
ORDER_CHILDREN: Mapping[str, str] = {"LineItem": "lineItems"}


def gid_type(gid: object) -> str | None:
    """``gid://shopify/LineItem/9001`` -> ``LineItem``."""
    if not isinstance(gid, str) or not gid.startswith("gid://shopify/"):
        return None
    parts = gid.split("/")
    return parts[3] if len(parts) > 4 else None


async def reassemble(
    lines: AsyncIterable[str | bytes],
    children: Mapping[str, str] = ORDER_CHILDREN,
    *,
    partial: bool = False,
) -> AsyncIterator[dict[str, Any]]:
    """Root objects of a grouped bulk JSONL stream, children under ``{field: {"nodes": [...]}}``.

    ``partial``: the file of a failed operation, which may stop anywhere: its last root object
    (perhaps missing children) is never handed over, nor anything after a line cut off.
    """
    current: dict[str, Any] | None = None
    members: dict[str, dict[str, Any]] = {}  # GIDs of the current root and its descendants
    number = 0
    async for raw in lines:
        number += 1
        text = raw.decode() if isinstance(raw, bytes) else raw
        if not text.strip():
            continue
        try:
            obj = load_json(text)
        except PayloadError:
            if partial:
                return  # cut off mid-line: the order in hand may be incomplete
            raise
        if not isinstance(obj, dict):
            raise PayloadError(f"bulk JSONL line {number}: not a JSON object")
        parent = obj.pop("__parentId", None)
        if parent is None:
            if current is not None:
                yield current
            current, members = obj, {}
            if isinstance(obj.get("id"), str):
                members[obj["id"]] = obj
            continue
        owner = members.get(parent) if isinstance(parent, str) else None
        if owner is None:
            raise PayloadError(
                f"bulk JSONL line {number}: its parent {str(parent)[:80]} is not the object before it "
                "(run the operation with groupObjects: true)"
            )
        field = children.get(gid_type(obj.get("id")) or "")
        if field is None:
            raise PayloadError(f"bulk JSONL line {number}: unexpected child {str(obj.get('id'))[:80]}")
        owner.setdefault(field, {"nodes": []}).setdefault("nodes", []).append(obj)
        if isinstance(obj.get("id"), str):
            members[obj["id"]] = obj
    if current is not None and not partial:
        yield current


async def run_bulk_query(client: ShopifyClient, query: str) -> AsyncIterator[dict[str, Any]]:
    """Run the bulk ``query`` on the client's shop and yield its root objects, reassembled."""
    settings = client.settings
    op_id = await _start(client, query)
    log.info("shopify_bulk_started", shop=client.shop, operation=op_id)
    renewals = 0
    while True:
        op = await _wait(client, op_id)
        status = str(op.get("status"))
        try:
            if status == "COMPLETED":
                count = 0
                if op.get("url"):
                    async for node in _download(client, str(op["url"]), partial=False):
                        count += 1
                        yield node
                log.info("shopify_bulk_read", shop=client.shop, operation=op_id, objects=count)
                return
            if status == "FAILED":
                async for node in _failed(client, op):
                    yield node
                return
        except BulkUrlExpired:
            renewals += 1
            if renewals > URL_RENEWALS:
                raise TransientError(
                    f"the result URL of Shopify's bulk operation {op_id} kept expiring; the sync will retry"
                ) from None
            log.info("shopify_bulk_url_expired", shop=client.shop, operation=op_id)
            await asyncio.sleep(settings.bulk_poll_s)
            continue
        raise TransientError(
            f"Shopify's bulk operation {op_id} ended {status.lower()} ({op.get('errorCode')}); "
            "the sync will retry"
        )


async def _start(client: ShopifyClient, query: str) -> str:
    """The id of a new operation (or of this sync's own one still running); waits out another's."""
    settings = client.settings
    deadline = time.monotonic() + settings.bulk_busy_wait_s
    while True:
        data = await client.graphql(RUN, {"query": query})
        payload = data.get("bulkOperationRunQuery") or {}
        errors = payload.get("userErrors") or []
        op = payload.get("bulkOperation")
        if not errors and isinstance(op, dict) and op.get("id"):
            return str(op["id"])
        codes = {str(e.get("code")) for e in errors if isinstance(e, dict)}
        if "OPERATION_IN_PROGRESS" not in codes:
            raise ConfigError(f"Shopify refused the bulk query: {str(errors)[:300]}")
        current = (await client.graphql(CURRENT)).get("currentBulkOperation") or {}
        if current.get("query") == query and current.get("status") in ACTIVE:
            log.info("shopify_bulk_adopted", shop=client.shop, operation=current.get("id"))
            return str(current["id"])  # this sync's own operation, started by a try that died
        if time.monotonic() >= deadline:
            raise RateLimited(
                f"another bulk operation ({str(current.get('id'))[:60]}) is running on {client.shop} "
                "and Shopify runs one at a time; the sync resumes when it has finished",
                max(30.0, settings.bulk_busy_wait_s),
            )
        log.info("shopify_bulk_busy", shop=client.shop, running=current.get("id"))
        await asyncio.sleep(settings.bulk_poll_s)


async def _wait(client: ShopifyClient, op_id: str) -> dict[str, Any]:
    """Poll the operation until it has ended; its last state."""
    settings = client.settings
    deadline = time.monotonic() + settings.bulk_max_wait_s
    while True:
        op = (await client.graphql(POLL, {"id": op_id})).get("node")
        if not isinstance(op, dict):
            raise PayloadError(f"Shopify has no bulk operation {op_id[:60]}")
        if op.get("status") not in ACTIVE:
            return op
        if time.monotonic() >= deadline:
            raise TransientError(
                f"Shopify's bulk operation {op_id} is still {str(op.get('status')).lower()} after "
                f"{settings.bulk_max_wait_s:.0f}s; the sync will retry and pick it up"
            )
        await asyncio.sleep(settings.bulk_poll_s)


async def _failed(client: ShopifyClient, op: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """A failed operation: its complete partial data, then the error that says what happened."""
    code, op_id = str(op.get("errorCode") or "unknown"), str(op.get("id"))
    if code == "ACCESS_DENIED":
        raise ConfigError(
            f"Shopify's bulk operation on {client.shop} was denied access (ACCESS_DENIED): "
            "re-install the app with the scopes it asks for"
        )
    count = 0
    if op.get("partialDataUrl"):
        async for node in _download(client, str(op["partialDataUrl"]), partial=True):
            count += 1
            yield node
        log.warning("shopify_bulk_partial", shop=client.shop, operation=op_id, code=code, objects=count)
        raise BulkPartialData(
            f"Shopify's bulk operation {op_id} failed ({code}) after {count} complete orders; "
            "those are stored and the sync will retry for the rest"
        )
    raise TransientError(f"Shopify's bulk operation {op_id} failed ({code}); the sync will retry")


async def _download(client: ShopifyClient, url: str, *, partial: bool) -> AsyncIterator[dict[str, Any]]:
    settings = client.settings
    api = BulkFileAPI(settings.max_retries, settings.retry_backoff_s)
    async with client.http.stream(api, "GET", url, timeout_s=settings.bulk_download_timeout_s) as response:
        try:
            async for node in reassemble(response.aiter_lines(), partial=partial):
                yield node
        except httpx.TransportError as exc:  # the stream broke off: the orders handed over were whole
            raise TransientError(
                f"the download of a bulk operation's result broke off ({type(exc).__name__}); "
                "the sync will retry"
            ) from exc
