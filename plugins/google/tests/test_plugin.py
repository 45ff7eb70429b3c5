"""The plugin loads through the ``metricx`` entry point and registers the provider."""

from __future__ import annotations

import importlib.metadata

import pluggy
from metricx_google import GoogleAdsProvider

from core import Provider
from core.testing.harness import hookspecs


def test_entry_point_registers_the_provider() -> None:
    (entry,) = [e for e in importlib.metadata.entry_points(group="metricx") if e.name == "google"]
    assert entry.value == "metricx_google.plugin"
    pm = pluggy.PluginManager("metricx")
    pm.add_hookspecs(hookspecs)
    pm.register(entry.load(), name="google")
    pm.check_pending()
    registered: list[Provider] = []
    pm.hook.register_providers(register=registered.append)
    assert [p.name for p in registered] == ["google"]
    assert isinstance(registered[0], GoogleAdsProvider)
    assert pm.hook.metricx_core_version() == [">=0.1,<0.2"]


def test_settings_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("METRICX_GOOGLE_BASE_URL", "http://127.0.0.1:8082")
    monkeypatch.setenv("METRICX_GOOGLE_API_VERSION", "v23")
    monkeypatch.setenv("METRICX_GOOGLE_CLIENT_SECRET", "s3cret")
    settings = GoogleAdsProvider().settings
    assert settings.api_root() == "http://127.0.0.1:8082/v23"
    assert "s3cret" not in repr(settings)
