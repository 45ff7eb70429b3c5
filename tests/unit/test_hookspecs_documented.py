"""core/HOOKS.md documents every hook in core/hookspecs.py with its exact signature (datasette-style)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from core import hookspecs

HOOKS_MD = Path(hookspecs.__file__).parent / "HOOKS.md"
SECTION = re.compile(r"^## (\w+)\s*$", re.MULTILINE)
FIRST_CODE = re.compile(r"```python\n(.*?)```", re.DOTALL)


def _specs() -> dict[str, object]:
    return {
        name: fn
        for name, fn in vars(hookspecs).items()
        if inspect.isfunction(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec")
    }


def _signature(name: str, fn: object) -> str:
    """``def name(a: T, ...) -> R`` from the spec, with annotations as written in the source."""
    sig = inspect.signature(fn)  # type: ignore[arg-type]
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"def {name}({params}) -> {sig.return_annotation}"


def _documented() -> dict[str, str]:
    text = HOOKS_MD.read_text()
    headings = list(SECTION.finditer(text))
    sections: dict[str, str] = {}
    for i, match in enumerate(headings):
        end = headings[i + 1].start() if i + 1 < len(headings) else len(text)
        body = text[match.end() : end]
        code = FIRST_CODE.search(body)
        if code:
            sections[match.group(1)] = code.group(1).strip().splitlines()[0]
    return sections


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().rstrip(":")


def test_there_are_hookspecs_to_document() -> None:
    assert {"register_providers", "metricx_core_version", "on_sync_failed"} <= _specs().keys()


@pytest.mark.parametrize("name", sorted(_specs()))
def test_every_hookspec_is_documented_with_its_exact_signature(name: str) -> None:
    documented = _documented()
    assert name in documented, f"core/HOOKS.md has no '## {name}' section with a python signature block"
    assert _normal(documented[name]) == _normal(_signature(name, _specs()[name])), (
        f"core/HOOKS.md documents {name} as {documented[name]!r}; "
        f"core/hookspecs.py has {_signature(name, _specs()[name])!r}"
    )


def test_no_section_documents_a_hook_that_does_not_exist() -> None:
    hook_like = {
        name for name, line in _documented().items() if line.startswith("def ") and not name[0].isupper()
    }
    assert hook_like <= _specs().keys(), f"HOOKS.md documents unknown hooks: {hook_like - _specs().keys()}"


def test_a_changed_signature_would_be_caught() -> None:
    def register_providers(register: Callable[[Provider], None], extra: int) -> None:  # noqa: F821
        """Stand-in for a spec whose signature drifted."""

    drifted = _signature("register_providers", register_providers)
    assert _normal(drifted) != _normal(_documented()["register_providers"])
