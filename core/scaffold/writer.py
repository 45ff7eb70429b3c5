"""Render ``template/`` into a new plugin package: pyproject, plugin, client, simulator, README, tests."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

from core.errors import ConfigError

TEMPLATE = Path(__file__).parent / "template"
NAME = re.compile(r"^[a-z][a-z0-9_]{1,30}$")
RESERVED = {"core", "metricx", "test", "tests"}


class ScaffoldError(ConfigError):
    """The provider name or target directory cannot be used."""


@dataclass(frozen=True)
class Names:
    """Every spelling of the provider's name the template uses."""

    name: str  # provider and entry-point name: "acme_ads"
    package: str  # import package: "metricx_acme_ads"
    dist: str  # distribution: "metricx-acme-ads"
    class_prefix: str  # "AcmeAds"
    display_name: str  # "Acme Ads"
    env_prefix: str  # "METRICX_ACME_ADS"
    core_range: str  # ">=0.1,<0.2"


def _core_range() -> str:
    from core import __version__

    major, minor = (int(part) for part in __version__.split(".")[:2])
    return f">={major}.{minor},<{major}.{minor + 1}" if major == 0 else f">={major}.{minor},<{major + 1}"


def names_for(name: str) -> Names:
    """Validate ``name`` (lowercase letters, digits, underscores) and derive the other spellings."""
    if not NAME.match(name) or name in RESERVED:
        raise ScaffoldError(
            f"provider name {name!r} must be 2-31 lowercase letters, digits or underscores, "
            f"start with a letter and not be one of {sorted(RESERVED)} (e.g. 'acme' or 'acme_ads')"
        )
    words = name.split("_")
    return Names(
        name=name,
        package=f"metricx_{name}",
        dist=f"metricx-{name.replace('_', '-')}",
        class_prefix="".join(word.capitalize() for word in words),
        display_name=" ".join(word.capitalize() for word in words),
        env_prefix=f"METRICX_{name.upper()}",
        core_range=_core_range(),
    )


def _render(text: str, names: Names) -> str:
    for key, value in asdict(names).items():
        text = text.replace("{{" + key + "}}", value)
    return text


def write_provider(name: str, directory: Path) -> Path:
    """Write the plugin package for provider ``name`` into ``directory/<dist>``; returns that path.

    Refuses to overwrite: the target must not exist or must be empty.
    """
    names = names_for(name)
    target = directory / names.dist
    if target.exists() and any(target.iterdir()):
        raise ScaffoldError(f"{target} already exists and is not empty; choose another --dir")
    for source in sorted(TEMPLATE.rglob("*")):
        if source.is_dir() or "__pycache__" in source.parts:
            continue
        relative = source.relative_to(TEMPLATE)
        parts = [names.package if part == "package" else part for part in relative.parts]
        destination = target.joinpath(*parts)
        if destination.suffix == ".tmpl":
            destination = destination.with_suffix("")
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(_render(source.read_text(), names))
    return target
