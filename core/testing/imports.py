"""The plugin import contract: a plugin uses core only through ``core``'s public API.

A provider package may import the names ``core/__init__.py`` lists in ``__all__``
(``from core import Provider``, ``import core`` then ``core.Provider``); its
simulators, demo wiring and tests may also import the public test kit
``core.testing``. Anything else (``core.db``, ``core.sync.engine``, a private
module) is an internal that may change in any release.

Run it on your own package the way the core's tests run it on the built-in ones::

    from core.testing.imports import check_plugin_imports

    def test_imports_only_public_core() -> None:
        assert check_plugin_imports(Path(metricx_acme.__file__).parent) == []
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import core

# Path parts under which the test kit (core.testing) may be imported.
TESTING_PARTS = frozenset({"simulator", "simulators", "tests", "testing", "conftest.py", "simulator.py"})


@dataclass(frozen=True, slots=True)
class ImportViolation:
    """One import of core that the contract forbids, with where it is."""

    path: Path
    line: int
    imported: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.imported}: {self.reason}"


def _public() -> frozenset[str]:
    return frozenset(core.__all__)


def _testing_allowed(path: Path, root: Path) -> bool:
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        parts = path.parts
    return any(part in TESTING_PARTS for part in parts)


def _module_allowed(module: str, testing: bool) -> str | None:
    """None when ``module`` may be imported, else the reason it may not."""
    if module == "core":
        return None
    if module == "core.testing" or module.startswith("core.testing."):
        return None if testing else "core.testing is for simulators and tests only"
    return "an internal module of core: import its public names from `core`"


class _Visitor(ast.NodeVisitor):
    def __init__(self, path: Path, testing: bool) -> None:
        self.path = path
        self.testing = testing
        self.public = _public()
        self.found: list[ImportViolation] = []

    def _flag(self, node: ast.AST, imported: str, reason: str) -> None:
        self.found.append(ImportViolation(self.path, getattr(node, "lineno", 0), imported, reason))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name == "core" or alias.name.startswith("core."):
                reason = _module_allowed(alias.name, self.testing)
                if reason:
                    self._flag(node, alias.name, reason)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level or not (module == "core" or module.startswith("core.")):
            return
        if module == "core":
            for alias in node.names:
                if alias.name == "testing":
                    if not self.testing:
                        self._flag(node, "core.testing", "core.testing is for simulators and tests only")
                elif alias.name not in self.public:
                    self._flag(node, f"core.{alias.name}", "not in core.__all__ (not public API)")
            return
        reason = _module_allowed(module, self.testing)
        if reason:
            self._flag(node, module, reason)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        # `import core` then `core.sync.engine...`: the first attribute must be public.
        if isinstance(node.value, ast.Name) and node.value.id == "core":
            name = node.attr
            if name == "testing":
                if not self.testing:
                    self._flag(node, "core.testing", "core.testing is for simulators and tests only")
            elif name not in self.public and not name.startswith("__"):
                self._flag(node, f"core.{name}", "not in core.__all__ (not public API)")
        self.generic_visit(node)


def check_file(path: Path, *, root: Path | None = None) -> list[ImportViolation]:
    """The contract's violations in one Python file (``root``: the package folder it belongs to)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    visitor = _Visitor(path, _testing_allowed(path, root or path.parent))
    visitor.visit(tree)
    return visitor.found


def check_plugin_imports(*roots: Path, exclude: Iterable[str] = ()) -> list[ImportViolation]:
    """Every violation of the import contract in the Python files below ``roots``.

    ``exclude``: folder names to skip (build output, virtualenvs).
    """
    skip = {".venv", "build", "dist", "__pycache__", *exclude}
    found: list[ImportViolation] = []
    for root in roots:
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for path in files:
            if skip.intersection(path.parts) or any(p.endswith(".egg-info") for p in path.parts):
                continue
            found.extend(check_file(path, root=root if root.is_dir() else root.parent))
    return found
