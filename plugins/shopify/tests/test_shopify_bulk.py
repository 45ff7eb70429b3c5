"""Bulk operation JSONL, streamed and reassembled by ``__parentId`` (the public fixture's lines)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from metricx_shopify.bulk import reassemble
from metricx_shopify.mapping import order_row
from metricx_shopify.queries import order_to_rest

from core import PayloadError

FIXTURE = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "bulk_operation_orders.json").read_text()
)


async def _lines(rows: list[Any], seen: list[int]) -> AsyncIterator[str]:
    for row in rows:
        seen.append(1)
        yield json.dumps(row)


async def test_the_fixture_s_lines_become_orders_with_their_line_items_streamed() -> None:
    seen: list[int] = []
    orders = []
    async for order in reassemble(_lines(FIXTURE["jsonl"], seen)):
        orders.append((order, len(seen)))
    # the first order is handed over when the second begins, not after the whole file
    assert [consumed for _, consumed in orders] == [4, 5]
    first, second = (o for o, _ in orders)
    assert [li["title"] for li in first["lineItems"]["nodes"]] == ["Hat", "Scarf"]
    assert [li["title"] for li in second["lineItems"]["nodes"]] == ["Gloves"]
    # the same shape as the paginated query's nodes: the one mapping reads it
    row, items = order_row(order_to_rest(second))
    assert (row["shopify_id"], str(row["total_price"])) == (5002, "12.50")
    assert [li["shopify_id"] for li in items or []] == [9003]
    refund = order_to_rest(second)["refunds"][0]["transactions"][0]
    assert (refund["amount"], refund["presentment_currency"]) == ("2.50", "EUR")


async def test_a_child_away_from_its_parent_is_refused_not_dropped() -> None:
    lines = [FIXTURE["jsonl"][0], FIXTURE["jsonl"][3], FIXTURE["jsonl"][1]]  # ungrouped output
    with pytest.raises(PayloadError, match="groupObjects"):
        async for _ in reassemble(_lines(lines, [])):
            pass


def test_the_fixture_names_its_source_and_the_lifecycle() -> None:
    assert "shopify.dev" in FIXTURE["_source"]
    assert [p["data"]["node"]["status"] for p in FIXTURE["polls"]] == ["CREATED", "RUNNING", "COMPLETED"]
    assert FIXTURE["failed"]["data"]["node"]["partialDataUrl"]
