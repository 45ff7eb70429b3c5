"""Plugin loading: duplicates fail at start with a clear message; selection by environment."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from core import Capabilities, JobSpec, hookimpl
from core.plugins import PluginConflict, load_registry


class _Provider:
    display_name = "Dup"
    capabilities = Capabilities()

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
