"""The plugin import contract: plugins use core only through `core`'s public API (issue 12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.scaffold.writer import write_provider
from core.testing.imports import check_plugin_imports

ROOT = Path(__file__).resolve().parents[2]
BAD = ROOT / "tests" / "fixtures" / "bad_import_plugin"
PLUGINS = sorted(p for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").exists())


def _found(root: Path) -> set[tuple[str, str]]:
    return {(v.path.relative_to(root).as_posix(), v.imported) for v in check_plugin_imports(root)}


def test_the_checker_reports_every_deep_import_of_a_bad_plugin() -> None:
    assert _found(BAD) == {
        ("metricx_bad/plugin.py", "core.sync.engine"),
        ("metricx_bad/plugin.py", "core.sync"),  # core.sync.engine used as an attribute
        ("metricx_bad/plugin.py", "core.db.engine"),
        ("metricx_bad/plugin.py", "core.errors"),
        ("metricx_bad/client.py", "core._private_helper"),
        ("metricx_bad/client.py", "core.testing.conformance"),
        ("metricx_bad/client.py", "core.ratelimit"),
    }


def test_violations_say_where_and_what_to_do() -> None:
    lines = [str(v) for v in check_plugin_imports(BAD)]
    assert any("plugin.py:5: core.db.engine: an internal module of core" in line for line in lines)
    assert any("core.testing is for simulators and tests only" in line for line in lines)


@pytest.mark.parametrize("plugin", PLUGINS, ids=[p.name for p in PLUGINS])
def test_built_in_plugins_import_only_public_core(plugin: Path) -> None:
    assert [str(v) for v in check_plugin_imports(plugin)] == []


def test_test_provider_imports_only_public_core() -> None:
    assert [str(v) for v in check_plugin_imports(ROOT / "tests" / "testprovider")] == []


def test_a_scaffolded_provider_imports_only_public_core(tmp_path: Path) -> None:
    package = write_provider("acme", tmp_path)
    assert [str(v) for v in check_plugin_imports(package)] == []
