"""The metricx hook implementations of the Meta plugin (thin: logic lives in the other modules)."""

from __future__ import annotations

import re
from collections.abc import Callable

from core import OAuthConnector, Provider, SimulatorSpec, hookimpl
from metricx_meta.connect import MetaConnector
from metricx_meta.demo import SIMULATOR
from metricx_meta.provider import MetaProvider


@hookimpl
def metricx_core_version() -> str:
    """This plugin works with metricx core 0.1.x."""
    return ">=0.1,<0.2"


@hookimpl
def register_providers(register: Callable[[Provider], None]) -> None:
    """Register the Meta Ads provider (settings from ``METRICX_META_*``)."""
    register(MetaProvider())


@hookimpl
def register_connectors(register: Callable[[OAuthConnector], None]) -> None:
    """Connect Meta ad accounts through Facebook Login (app id and secret from ``METRICX_META_*``)."""
    register(MetaConnector())


@hookimpl
def register_simulators(register: Callable[[SimulatorSpec], None]) -> None:
    """Let `metricx demo` run the Meta simulator."""
    register(SIMULATOR)


@hookimpl
def register_secret_patterns(register: Callable[[str | re.Pattern[str]], None]) -> None:
    """Meta's token-exchange parameter and the app secret proof never reach a log line."""
    register("fb_exchange_token")
    register("appsecret_proof")
