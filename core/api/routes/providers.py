"""Installed providers and their capabilities."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from core.api.deps import PrincipalDep, RedisDep
from core.api.schemas import ApiVersionPublic, ProviderPublic
from core.cache import ProviderCache
from core.lifecycle import describe
from core.plugins import get_registry
from core.providers import ReportsQuotas

router = APIRouter(tags=["providers"])


@router.get("/providers", response_model=list[ProviderPublic])
async def list_providers(_: PrincipalDep, redis: RedisDep) -> list[ProviderPublic]:
    """Every installed provider: its plugin, version, capabilities and quotas."""
    registry = get_registry()
    versions = {p.name: p.version for p in registry.plugins}
    today = datetime.now(UTC).date()
    out = []
    for name, provider in sorted(registry.providers.items()):
        caps = provider.capabilities
        plugin = registry.provider_owner.get(name, "")
        quotas = []
        if isinstance(provider, ReportsQuotas):
            quotas = [dict(q) for q in await provider.quota_status(ProviderCache(redis, name))]
        out.append(
            ProviderPublic(
                name=name,
                display_name=provider.display_name,
                plugin=plugin,
                version=versions.get(plugin),
                levels=list(caps.levels),
                attribution_window_days=caps.attribution_window_days,
                backfill_days=caps.backfill_days,
                backfill_slice_days=caps.backfill_slice_days,
                timezone_source=caps.timezone_source,
                realtime=caps.realtime,
                api_version=ApiVersionPublic.model_validate(describe(provider, today)),
                quotas=quotas,
            )
        )
    return out
