"""Plugin loading: duplicates fail at start with a clear message; selection by environment."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from core import Capabilities, JobSpec, hookimpl
from core.plugins import PluginConflict, load_registry


class _Provider:
    display_name = "Dup"
    capabilities = Capabilities(levels=("campaign",))

    def __init__(self, name: str) -> None:
        self.name = name


class _ProviderPlugin:
    def __init__(self, name: str) -> None:
        self._name = name

    @hookimpl
    def register_providers(self, register: Callable[[object], None]) -> None:
        register(_Provider(self._name))


class _JobPlugin:
    @hookimpl
    def register_jobs(self, register: Callable[[JobSpec], None]) -> None:
        async def job(ctx: dict[str, object]) -> None:
            return None

        register(JobSpec("shopify.sync_store", job))


def test_duplicate_provider_names_fail_at_start() -> None:
    with pytest.raises(
        PluginConflict,
        match="provider 'testprovider' is registered by both plugin 'testprovider' and plugin 'copycat'",
    ):
        load_registry(extra_plugins=[("copycat", _ProviderPlugin("testprovider"))])


def test_duplicate_job_names_fail_at_start() -> None:
    with pytest.raises(PluginConflict, match=r"job 'shopify\.sync_store' is registered by both"):
        load_registry(extra_plugins=[("a", _JobPlugin()), ("b", _JobPlugin())])


def test_disable_and_load_select_plugins() -> None:
    assert "testprovider" in load_registry().providers
    assert "testprovider" not in load_registry(disable="testprovider").providers
    only = load_registry(load="testprovider")
    assert list(only.providers) == ["testprovider"]


def test_missing_provider_names_what_is_installed() -> None:
    with pytest.raises(Exception, match="provider 'tiktok' is not installed"):
        load_registry(load="testprovider").provider("tiktok")


class _RaisingPlugin:
    """Registers a provider and a job, then its provider hook raises."""

    @hookimpl
    def register_jobs(self, register: Callable[[JobSpec], None]) -> None:
        async def job(ctx: dict[str, object]) -> None:
            return None

        register(JobSpec("raising.job", job))

    @hookimpl
    def register_providers(self, register: Callable[[object], None]) -> None:
        register(_Provider("half"))
        raise KeyError("ACME_URL")


def test_a_plugin_whose_registration_hook_raises_is_skipped_whole() -> None:
    registry = load_registry(extra_plugins=[("raising", _RaisingPlugin())])
    assert [(p.name, p.message) for p in registry.problems] == [
        ("raising", "plugin 'raising' failed in register_providers: KeyError: 'ACME_URL'")
    ]
    assert "half" not in registry.providers and "raising.job" not in registry.jobs
    assert "raising" not in {p.name for p in registry.plugins}
    assert "testprovider" in registry.providers  # the others still load
    assert registry.pm is not None and not registry.pm.has_plugin("raising")


def test_strict_mode_refuses_a_plugin_whose_registration_hook_raises() -> None:
    with pytest.raises(PluginConflict, match="METRICX_STRICT_PLUGINS is set and plugin 'raising' failed"):
        load_registry(strict=True, extra_plugins=[("raising", _RaisingPlugin())])
