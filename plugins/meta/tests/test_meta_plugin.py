"""The plugin registers the provider through the metricx hooks and entry point."""

from __future__ import annotations

import importlib.metadata

import pytest
from metricx_meta import MetaProvider, plugin

from core import Provider


def test_entry_point_names_the_plugin_module() -> None:
    points = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="metricx")}
    assert points["meta"] == "metricx_meta.plugin"


def test_hooks_register_the_meta_provider() -> None:
    registered: list[Provider] = []
    plugin.register_providers(registered.append)
    assert [p.name for p in registered] == ["meta"]
    provider = registered[0]
    assert isinstance(provider, MetaProvider)
    assert provider.capabilities.levels == ("campaign", "adset", "ad")
    assert (provider.capabilities.attribution_window_days, provider.capabilities.backfill_days) == (7, 90)
    assert plugin.metricx_core_version() == ">=0.1,<0.2"


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICX_META_BASE_URL", "http://127.0.0.1:8081")
    monkeypatch.setenv("METRICX_META_ASYNC_POLL_INTERVAL_S", "0.01")
    provider = MetaProvider()
    assert provider.settings.base_url == "http://127.0.0.1:8081"
    assert provider.settings.async_poll_interval_s == 0.01
    assert provider.settings.api_version == "v26.0"
