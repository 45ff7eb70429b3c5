"""The Shopify plugin is a guest: it imports core only through ``core``'s public names."""

from __future__ import annotations

import ast
from pathlib import Path

import metricx_shopify

import core

PACKAGE = Path(metricx_shopify.__file__).parent
# demo.py's `core.providers` import goes with the demo rework (issue 12, simulators/demo).
PENDING = {"demo.py"}


def _core_imports(path: Path) -> list[tuple[str, list[str]]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "core":
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.split(".")[0] == "core"]
    return found


def test_plugin_imports_only_public_core_names() -> None:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative in PENDING:
            continue
        in_simulator = relative.startswith("simulator/")
        for module, names in _core_imports(path):
            if module == "core" and set(names) <= set(core.__all__):
                continue
            if in_simulator and module.startswith("core.testing"):
                continue
            bad.append(f"{relative}: {module} {names}")
    assert bad == []


def test_the_checker_sees_a_deep_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from core.sync.engine import run_sync\nfrom core import SyncContext\n")
    assert _core_imports(module) == [("core.sync.engine", ["run_sync"]), ("core", ["SyncContext"])]
