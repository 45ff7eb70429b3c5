"""The hooks a metricx plugin may implement. Each docstring is the contract.

A plugin is a module named by an entry point in the ``metricx`` group; it
decorates functions with :data:`hookimpl` whose names and parameters match the
specs below exactly (``check_pending()`` rejects a misspelled hook at start).
Registration hooks receive a ``register`` callback, so one plugin can add
several objects and the core keeps typed wrappers (see ``core/plugins.py``).
The plugin author's reference, with examples, is ``core/HOOKS.md``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from fastapi import APIRouter

    from core.oauth import OAuthConnector
    from core.providers import JobSpec, Provider, ScheduleEntry, SimulatorSpec

PROJECT = "metricx"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def metricx_core_version() -> str:  # type: ignore[empty-body]
    """Return the range of core versions this plugin works with, as a PEP 440 specifier.

    Example: ``">=0.1,<0.2"``. A plugin whose range excludes the running core is
    reported and skipped (or stops start-up when ``METRICX_STRICT_PLUGINS`` is set).
    """


@hookspec
def register_providers(register: Callable[[Provider], None]) -> None:
    """Register provider objects: call ``register(provider)`` once per provider.

    Runs once when the plugin manager loads. Provider names must be unique
    across every installed plugin; a duplicate stops start-up.
    """


@hookspec
def register_connectors(register: Callable[[OAuthConnector], None]) -> None:
    """Register the OAuth connector of each provider the plugin ships: ``register(connector)``.

    Runs once when the plugin manager loads. ``connector.provider`` names a registered provider;
    one connector per provider. The core runs the connect flow (state, PKCE, callback, storage,
    account picking) and calls the connector for the platform's URLs, code exchange and accounts.
    """


@hookspec
def register_jobs(register: Callable[[JobSpec], None]) -> None:
    """Register extra arq jobs: call ``register(JobSpec(name, function))``.

    Runs when the worker builds ``WorkerSettings.functions``. Job names must be
    unique and should be namespaced by plugin (``shopify.sync_store``).
    """


@hookspec
def register_schedules(register: Callable[[ScheduleEntry], None]) -> None:
    """Register cron entries for the scheduler: ``register(ScheduleEntry(name, cron, job))``.

    Runs when the scheduler starts. ``cron`` is a UTC cron expression (five fields,
    or six with seconds first) and ``job`` a registered job name; the job receives
    the tick time as the ``tick`` keyword (ISO UTC) when its function accepts it.
    """


@hookspec
def register_routers(register: Callable[[APIRouter], None]) -> None:
    """Register FastAPI routers; they are mounted under ``/v1/plugins/<plugin>``.

    Runs when the API app is created. The core adds no authentication to them:
    depend on ``core.api.deps.WorkspaceDep`` for tenant data.
    """


@hookspec
def migration_locations() -> str | None:
    """Return the directory of this plugin's Alembic branch (its own ``versions`` folder), or None.

    Runs when ``metricx db upgrade`` builds the Alembic config; every branch is
    upgraded to its head.
    """


@hookspec
def register_simulators(register: Callable[[SimulatorSpec], None]) -> None:
    """Register the simulator of each provider the plugin ships: ``register(SimulatorSpec(...))``.

    Runs when ``metricx demo`` starts: it serves each simulator as its own process,
    points the workers at it, creates the demo connections and drives the
    late-conversion and throttling scenarios through it.
    """


@hookspec
def register_secret_patterns(register: Callable[[str | re.Pattern[str]], None]) -> None:
    """Register what the plugin's secrets look like, so the log redaction removes them.

    ``register("X-Acme-Key")`` names a query parameter, header or field whose value is a
    secret (``name=value``, ``name: value``, ``"name": "value"``); ``register(re.compile(...))``
    gives a regex whose match is replaced (its first group, if any, is kept as a prefix).
    Runs once when the plugin manager loads; applies to every log line of the process.
    """


@hookspec
def on_sync_started(connection_id: str, workspace_id: str, provider: str, mode: str, job_id: str) -> None:
    """Called when a sync try starts (after the connection is marked ``syncing``).

    Must return quickly; exceptions are logged and ignored.
    """


@hookspec
def on_sync_finished(
    connection_id: str, workspace_id: str, provider: str, mode: str, job_id: str, stats: dict[str, Any]
) -> None:
    """Called when a sync try succeeded; ``stats`` holds rows written, API calls and seconds throttled."""


@hookspec
def on_sync_failed(
    connection_id: str,
    workspace_id: str,
    provider: str,
    mode: str,
    job_id: str,
    error_kind: str,
    message: str,
) -> None:
    """Called when a sync try failed; ``error_kind`` is the error's kind, ``message`` has no secrets."""
