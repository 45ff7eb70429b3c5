"""Plugin discovery (entry-point group ``metricx``) and typed access to what plugins register.

No caller touches ``pm.hook`` directly: :func:`get_registry` returns a
:class:`Registry` holding providers, jobs, schedule entries, routers and
migration locations, collected once per process.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy
import structlog
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from core import hookspecs
from core.errors import ConfigError
from core.logging import add_secret_patterns, secret_pattern
from core.oauth import OAuthConnector
from core.providers import JobSpec, Provider, ScheduleEntry, SimulatorSpec

if TYPE_CHECKING:
    from fastapi import APIRouter

log = structlog.get_logger(__name__)

ENTRY_POINT_GROUP = "metricx"


class PluginConflict(ConfigError):
    """Two plugins registered the same provider or job name, or a plugin is broken in strict mode."""


@dataclass(frozen=True, slots=True)
class PluginProblem:
    """A plugin that was found but skipped, and why."""

    name: str
    message: str


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """An installed, loaded plugin."""

    name: str
    version: str | None
    distribution: str | None
    hooks: tuple[str, ...]


@dataclass
class Registry:
    """Everything the loaded plugins registered, with its owner."""

    providers: dict[str, Provider] = field(default_factory=dict)
    provider_owner: dict[str, str] = field(default_factory=dict)
    jobs: dict[str, JobSpec] = field(default_factory=dict)
    job_owner: dict[str, str] = field(default_factory=dict)
    schedules: list[ScheduleEntry] = field(default_factory=list)
    schedule_owner: dict[str, str] = field(default_factory=dict)
    routers: list[tuple[str, APIRouter]] = field(default_factory=list)
    migration_locations: list[tuple[str, str]] = field(default_factory=list)
    simulators: dict[str, SimulatorSpec] = field(default_factory=dict)
    connectors: dict[str, OAuthConnector] = field(default_factory=dict)
    secret_patterns: list[re.Pattern[str]] = field(default_factory=list)
    plugins: list[PluginInfo] = field(default_factory=list)
    problems: list[PluginProblem] = field(default_factory=list)
    pm: pluggy.PluginManager | None = None

    def provider(self, name: str) -> Provider:
        """The provider called ``name``; ConfigError naming what is installed when missing."""
        try:
            return self.providers[name]
        except KeyError:
            installed = ", ".join(sorted(self.providers)) or "none"
            raise ConfigError(
                f"provider {name!r} is not installed (installed: {installed}); "
                f"install its plugin package, e.g. metricx-{name}"
            ) from None

    def notify(self, event: str, **kwargs: Any) -> None:
        """Call a sync lifecycle hook; a failing plugin is logged with its name, never fatal.

        Each plugin is called through pluggy's own hook caller (restricted to that plugin), so an
        implementation receives only the arguments it declares, and one plugin's exception (pluggy
        re-raises it and stops the call) neither breaks the sync nor silences the other plugins.
        """
        if self.pm is None:
            return
        for impl in getattr(self.pm.hook, event).get_hookimpls():
            others = [p for p in self.pm.get_plugins() if p is not impl.plugin]
            try:
                self.pm.subset_hook_caller(event, others)(**kwargs)
            except Exception as exc:  # a listener must not break the sync it listens to
                log.warning(
                    "plugin_hook_failed",
                    plugin=impl.plugin_name,
                    hook=event,
                    error_type=type(exc).__name__,
                    error=str(exc),
                )


def _csv(value: str | None) -> set[str] | None:
    if value is None or not value.strip():
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def _selected(name: str, load: set[str] | None, disable: set[str] | None) -> bool:
    if load is not None and name not in load:
        return False
    return not (disable and name in disable)


def _check_core_version(pm: pluggy.PluginManager, plugin: object, name: str) -> str | None:
    from core import __version__

    impl = getattr(plugin, "metricx_core_version", None)
    if impl is None:
        return None
    try:
        spec_text = impl()
        spec = SpecifierSet(spec_text)
    except InvalidSpecifier:
        return f"plugin {name!r} declares an invalid core version range {spec_text!r}"
    except Exception as exc:  # a broken plugin must be reported, not crash the host
        return f"plugin {name!r} failed in metricx_core_version: {type(exc).__name__}: {exc}"
    if Version(__version__) not in spec:
        return f"plugin {name!r} needs metricx core {spec_text}, but {__version__} is installed"
    return None


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _load_one(pm: pluggy.PluginManager, name: str, ep: importlib.metadata.EntryPoint) -> PluginInfo:
    try:
        plugin = ep.load()
    except Exception as exc:
        raise _Skip(f"plugin {name!r} failed to import {ep.value!r}: {type(exc).__name__}: {exc}") from exc
    problem = _check_core_version(pm, plugin, name)
    if problem:
        raise _Skip(problem)
    try:
        pm.register(plugin, name=name)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        if pm.is_registered(plugin):
            pm.unregister(name=name)
        # One line, without the module repr (a long path) that pluggy appends.
        reason = str(exc).split(" in plugin ")[0].replace("\n", "; ")
        raise _Skip(f"plugin {name!r} is invalid: {reason}; see core/HOOKS.md for the hooks") from exc
    dist = ep.dist
    hooks = tuple(sorted(n for n in dir(plugin) if not n.startswith("_") and hasattr(pm.hook, n)))
    return PluginInfo(
        name=name,
        version=dist.version if dist else None,
        distribution=dist.metadata["Name"] if dist else None,
        hooks=hooks,
    )


class _Skip(Exception):
    pass


def load_registry(
    *,
    load: str | None = None,
    disable: str | None = None,
    strict: bool = False,
    extra_plugins: Iterable[tuple[str, object]] = (),
) -> Registry:
    """Discover plugins, validate them and collect what they register.

    ``load`` / ``disable`` are comma-separated plugin names (``METRICX_LOAD_PLUGINS`` /
    ``METRICX_DISABLE_PLUGINS``). A broken or incompatible plugin is reported in
    ``problems`` and skipped; with ``strict`` it raises :class:`PluginConflict`.
    Duplicate provider or job names always raise.
    """
    pm = _new_manager()
    registry = Registry(pm=pm)
    load_set, disable_set = _csv(load), _csv(disable)
    seen: set[str] = set()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in seen or not _selected(ep.name, load_set, disable_set):
            continue
        seen.add(ep.name)
        try:
            registry.plugins.append(_load_one(pm, ep.name, ep))
        except _Skip as skip:
            problem = PluginProblem(ep.name, str(skip))
            log.error("plugin_skipped", plugin=ep.name, problem=problem.message, strict=strict)
            registry.problems.append(problem)
    for name, plugin in extra_plugins:
        pm.register(plugin, name=name)
        pm.check_pending()
        registry.plugins.append(PluginInfo(name, None, None, ()))
    _collect(pm, registry, strict=strict)
    add_secret_patterns(registry.secret_patterns)
    if strict and registry.problems:
        raise PluginConflict(
            "METRICX_STRICT_PLUGINS is set and "
            + "; ".join(p.message for p in registry.problems)
            + ". Fix or uninstall the plugin, or skip it with METRICX_DISABLE_PLUGINS"
        )
    return registry


REGISTRATION_HOOKS = (
    "register_providers",
    "register_jobs",
    "register_schedules",
    "register_routers",
    "register_simulators",
    "register_connectors",
    "register_secret_patterns",
    "migration_locations",
)


def _collect(pm: pluggy.PluginManager, registry: Registry, *, strict: bool) -> None:
    """Run each plugin's registration hooks; a plugin whose hook raises is skipped whole."""
    for name, plugin in list(pm.list_name_plugin()):
        staged = Registry()
        try:
            _collect_plugin(pm, name, plugin, staged)
        except PluginConflict:
            raise
        except _HookFailed as failed:
            _skip_registered(pm, registry, name, failed.message, strict=strict)
            continue
        _merge(registry, staged, name)


class _HookFailed(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _skip_registered(
    pm: pluggy.PluginManager, registry: Registry, name: str, message: str, *, strict: bool
) -> None:
    pm.unregister(name=name)
    registry.plugins = [info for info in registry.plugins if info.name != name]
    log.error("plugin_skipped", plugin=name, problem=message, strict=strict)
    registry.problems.append(PluginProblem(name, message))


def _collect_plugin(pm: pluggy.PluginManager, name: str, plugin: object, staged: Registry) -> None:
    adders: dict[str, Callable[[Any], None]] = {
        "register_providers": lambda p: _add_unique(staged.providers, p.name, p, "provider", name),
        "register_jobs": lambda spec: _add_unique(staged.jobs, spec.name, spec, "job", name),
        "register_schedules": lambda entry: _add_schedule(staged, entry),
        "register_routers": lambda router: staged.routers.append((name, router)),
        "register_simulators": lambda spec: staged.simulators.__setitem__(spec.provider, spec),
        "register_connectors": lambda c: _add_unique(staged.connectors, c.provider, c, "connector", name),
        "register_secret_patterns": lambda pattern: staged.secret_patterns.append(secret_pattern(pattern)),
    }
    for hook in REGISTRATION_HOOKS:
        for impl in getattr(pm.hook, hook).get_hookimpls():
            if impl.plugin is not plugin:
                continue
            try:
                if hook == "migration_locations":
                    location = impl.function()
                    if location:
                        staged.migration_locations.append((name, str(location)))
                else:
                    impl.function(register=adders[hook])
            except PluginConflict:
                raise
            except Exception as exc:  # a broken plugin is reported and skipped, not fatal to the host
                detail = " ".join(f"{type(exc).__name__}: {exc}".split())
                raise _HookFailed(f"plugin {name!r} failed in {hook}: {detail}") from exc


def _add_unique(target: dict[str, Any], key: str, value: object, what: str, owner: str) -> None:
    if key in target:
        raise PluginConflict(f"{what} {key!r} is registered twice by plugin {owner!r}")
    target[key] = value


def _add_schedule(staged: Registry, entry: ScheduleEntry) -> None:
    if any(e.name == entry.name for e in staged.schedules):
        raise PluginConflict(f"schedule entry {entry.name!r} is registered twice")
    staged.schedules.append(entry)


def _merge(registry: Registry, staged: Registry, owner: str) -> None:
    """Add one plugin's registrations; a name another plugin already registered stops start-up."""
    for name, provider in staged.providers.items():
        if name in registry.providers:
            raise PluginConflict(
                f"provider {name!r} is registered by both plugin {registry.provider_owner[name]!r} "
                f"and plugin {owner!r}; uninstall or disable one"
            )
        registry.providers[name] = provider
        registry.provider_owner[name] = owner
    for name, spec in staged.jobs.items():
        if name in registry.jobs:
            raise PluginConflict(
                f"job {name!r} is registered by both plugin {registry.job_owner[name]!r} "
                f"and plugin {owner!r}; job names must be unique"
            )
        registry.jobs[name] = spec
        registry.job_owner[name] = owner
    for entry in staged.schedules:
        if entry.name in registry.schedule_owner:
            raise PluginConflict(f"schedule entry {entry.name!r} is registered twice")
        registry.schedules.append(entry)
        registry.schedule_owner[entry.name] = owner
    registry.routers.extend(staged.routers)
    registry.simulators.update(staged.simulators)
    for name, connector in staged.connectors.items():
        if name in registry.connectors:
            raise PluginConflict(f"connector {name!r} is registered twice (plugin {owner!r})")
        registry.connectors[name] = connector
    registry.secret_patterns.extend(staged.secret_patterns)
    registry.migration_locations.extend(staged.migration_locations)


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use from the environment's settings."""
    global _registry
    if _registry is None:
        _registry = load_registry(
            load=os.environ.get("METRICX_LOAD_PLUGINS"),
            disable=os.environ.get("METRICX_DISABLE_PLUGINS"),
            strict=os.environ.get("METRICX_STRICT_PLUGINS", "").lower() in {"1", "true", "yes"},
        )
    return _registry


def reset_registry() -> None:
    """Forget the loaded registry (tests that change the environment)."""
    global _registry
    _registry = None
