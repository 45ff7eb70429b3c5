"""Entity sync and account reads against the simulator."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from meta_helpers import collect, ref
from metricx_meta import MetaProvider, MetaSettings
from metricx_meta.simulator import SimState

from core import AccountRef, AuthError, ConfigError, Credentials, EntityRecord, ProviderContext


async def entities(provider: MetaProvider, ctx: ProviderContext, creds: Credentials) -> list[EntityRecord]:
    return [e for batch in await collect(provider.sync_entities(ctx, ref(), creds)) for e in batch]


async def test_entities_include_paused_deleted_archived_with_parents_first(
    provider: MetaProvider, ctx: ProviderContext, creds: Credentials, sim: SimState
) -> None:
    records = await entities(provider, ctx, creds)

    account = sim.accounts["1001"]
    assert [r.level for r in records] == ["campaign"] * 3 + ["adset"] * 6 + ["ad"] * 18
    assert {r.external_id for r in records} == set(account.by_id)
    statuses = {r.status for r in records}
    assert {"ACTIVE", "PAUSED", "DELETED", "ARCHIVED", "CAMPAIGN_PAUSED", "ADSET_PAUSED"} <= statuses
    seen: dict[str, str] = {}
    for record in records:
        if record.level == "campaign":
            assert record.parent_external_id is None
        else:
            expected = {"adset": "campaign", "ad": "adset"}[record.level]
            assert record.parent_level == expected
            assert seen[record.parent_external_id or ""] == expected  # parent came first
            assert record.parent_external_id == account.by_id[record.external_id].parent_id
        seen[record.external_id] = record.level
    assert all(r.raw.get("id") == r.external_id for r in records)


async def test_pausing_an_ad_shows_paused_on_next_sync(
    provider: MetaProvider, ctx: ProviderContext, creds: Credentials, sim: SimState, sim_post: Any
) -> None:
    before = {r.external_id: r.status for r in await entities(provider, ctx, creds)}
    active_ad = next(i for i, s in before.items() if s == "ACTIVE" and i.startswith("25"))

    await sim_post(f"/_sim/entities/{active_ad}/status", {"status": "PAUSED"})

    after = {r.external_id: r.status for r in await entities(provider, ctx, creds)}
    assert after[active_ad] == "PAUSED"


async def test_entities_are_yielded_page_by_page(
    settings: MetaSettings, ctx: ProviderContext, creds: Credentials
) -> None:
    provider = MetaProvider(settings.model_copy(update={"page_size": 4}))
    batches = await collect(provider.sync_entities(ctx, ref(), creds))
    assert len(batches) >= 7
    assert all(0 < len(batch) <= 4 for batch in batches)
    assert sum(map(len, batches)) == 27


async def test_fetch_account_reads_timezone_and_currency(
    provider: MetaProvider, ctx: ProviderContext, creds: Credentials
) -> None:
    info = await provider.fetch_account(ctx, ref("2002"), creds)
    assert (info.timezone, info.currency) == ("Asia/Tokyo", "JPY")
    assert info.name


async def test_unknown_account_is_a_config_error(
    provider: MetaProvider, ctx: ProviderContext, creds: Credentials
) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        await provider.fetch_account(ctx, AccountRef("c", "w", "act_999"), creds)


async def test_validate_token_returns_none_and_rejects_expired_tokens(
    provider: MetaProvider, ctx: ProviderContext, sim_post: Any, http: httpx.AsyncClient
) -> None:
    token = "EAAB-secret-token-123"
    await sim_post("/_sim/tokens", {"token": token, "state": "valid"})
    assert await provider.validate_token(ctx, ref(), Credentials(access_token=token)) is None

    await sim_post("/_sim/tokens", {"token": token, "state": "expired"})
    with pytest.raises(AuthError, match="reconnect the Meta account") as caught:
        await provider.validate_token(ctx, ref(), Credentials(access_token=token))
    assert token not in str(caught.value)


async def test_children_of_a_deleted_campaign_are_read_by_id(
    provider: MetaProvider,
    ctx: ProviderContext,
    creds: Credentials,
    sim: SimState,
    sim_post: Any,
    http: httpx.AsyncClient,
) -> None:
    """Meta stops listing a deleted campaign's ad sets and ads: the sync still names them and parents."""
    account = sim.accounts["1001"]
    campaign = account.campaigns[0]
    await sim_post(f"/_sim/entities/{campaign.id}/status", {"status": "DELETED"})
    children = {e.id for e in account.adsets + account.ads if e.campaign_id == campaign.id}
    listed = await http.get(
        "/v26.0/act_1001/ads",
        params={
            "access_token": "sim-valid-token",
            "fields": "id",
            "limit": 500,
            "filtering": json.dumps(
                [
                    {
                        "field": "effective_status",
                        "operator": "IN",
                        "value": ["ACTIVE", "PAUSED", "DELETED", "ARCHIVED"],
                    }
                ]
            ),
        },
    )
    assert children and not children & {row["id"] for row in listed.json()["data"]}  # hidden from the edge

    records = await entities(provider, ctx, creds)
    by_id = {r.external_id: r for r in records}
    assert set(by_id) == set(account.by_id)
    for child in children:
        record = by_id[child]
        assert record.name == account.by_id[child].name and record.status in ("DELETED", "ARCHIVED")
        assert record.parent_external_id == account.by_id[child].parent_id
    seen: set[str] = set()
    for record in records:  # parents still come first
        assert record.parent_external_id is None or record.parent_external_id in seen
        seen.add(record.external_id)

    # Deleted objects do not change: the next sync reuses them without asking insights again.
    assert "insights" in str((await http.get("/_sim/requests")).json())  # the first sync asked
    await http.delete("/_sim/requests")
    again = await entities(provider, ctx, creds)
    assert [(r.external_id, r.name, r.parent_external_id) for r in again] == [
        (r.external_id, r.name, r.parent_external_id) for r in records
    ]
    log = (await http.get("/_sim/requests")).json()
    assert "insights" not in str(log) and "ids=" not in str(log)
