"""Issue 19 item 7: zones validated at connect, compaction isolated per connection, paused and
reconnect_required connections, the operator key on tenant routes."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from core.db.engine import session_scope
from tests.integration.test_api_support import Tenant, connect
from tests.integration.test_compaction import add_day, make_account


async def test_an_unknown_timezone_is_refused_at_connect(
    api: httpx.AsyncClient, tenant: Tenant, sim: Any
) -> None:
    for zone in ("Mars/Olympus", "../../etc/passwd", "Europe/Berlin "):
        sim.control(timezone=zone)
        response = await api.post(
            tenant.url("/connections"),
            json={
                "provider": "testprovider",
                "external_account_id": "acct-tz",
                "credentials": {"access_token": "tp-valid-token"},
                "config": {"base_url": sim.url},
            },
            headers=tenant.headers,
        )
        assert response.status_code == 422, response.text
        assert "not an IANA zone" in response.json()["error"]["message"]
    sim.control(timezone="Europe/Berlin")
    assert (await connect(api, tenant, sim.url))["timezone"] == "Europe/Berlin"


async def test_one_unknown_zone_does_not_stop_compaction_for_everyone(metricx_env: Any, caplog: Any) -> None:
    from core.compaction import compact_all

    day = (datetime.now(UTC) - timedelta(days=4)).date()
    good = await make_account("Europe/Berlin", "EUR")
    await add_day(good, day, "Europe/Berlin", "EUR")
    bad = await make_account("UTC", "EUR")
    await add_day(bad, day, "UTC", "EUR")
    async with session_scope() as session:  # stored before zones were validated
        await session.execute(
            text("UPDATE connections SET timezone = 'Mars/Olympus' WHERE id = :c"), {"c": bad}
        )
    with caplog.at_level(logging.WARNING):
        stats = await compact_all()
    assert stats["rows_removed"] > 0 and stats["failed_days"] == 0
    assert "compaction_skipped" in caplog.text and str(bad) in caplog.text
    async with session_scope() as session:
        hours = await session.scalar(
            text(
                "SELECT count(DISTINCT date_trunc('hour', captured_at)) FROM metric_snapshots "
                "WHERE connection_id = :c"
            ),
            {"c": good},
        )
        rows = await session.scalar(
            text("SELECT count(*) FROM metric_snapshots WHERE connection_id = :c"), {"c": good}
        )
    assert rows == 2 * hours  # one snapshot per entity and hour left: compacted
