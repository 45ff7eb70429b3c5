"""The layout has no import cycle inside ``core`` (grimp reads the imports without running them).

A cycle means two modules cannot be understood, tested or moved apart; the usual cure is a third
module both import (as ``core/cli/common.py`` is for the command modules).
"""

from __future__ import annotations

import grimp


def _cycles(*, exclude_type_checking_imports: bool) -> list[list[str]]:
    """Every strongly connected set of two or more modules, each as "a -> b (line)" import lines."""
    graph = grimp.build_graph(
        "core", exclude_type_checking_imports=exclude_type_checking_imports, cache_dir=None
    )
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def visit(module: str) -> None:  # Tarjan's algorithm
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in edges[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == module:
                    break
            if len(component) > 1:
                components.append(component)

    for module in edges:
        if module not in index:
            visit(module)
    return [
        [
            f"{a} -> {b} (line {detail['line_number']})"
            for a in sorted(component)
            for b in edges[a]
            if b in component
            for detail in graph.get_import_details(importer=a, imported=b)
        ]
        for component in components
    ]


def test_no_import_cycle_inside_core() -> None:
    cycles = _cycles(exclude_type_checking_imports=True)
    assert cycles == [], "import cycles inside core:\n" + "\n".join("; ".join(c) for c in cycles)


def test_no_import_cycle_inside_core_even_for_type_checking() -> None:
    cycles = _cycles(exclude_type_checking_imports=False)
    assert cycles == [], "import cycles inside core:\n" + "\n".join("; ".join(c) for c in cycles)
