"""metricx hook implementations of the Google Ads plugin (hooks only; logic lives in provider.py)."""

from __future__ import annotations

import re
from collections.abc import Callable

from core import OAuthConnector, Provider, SimulatorSpec, hookimpl
from metricx_google.connect import GoogleConnector
from metricx_google.demo import SIMULATOR
from metricx_google.provider import GoogleAdsProvider


@hookimpl
def metricx_core_version() -> str:
    """Core versions this plugin works with."""
    return ">=0.1,<0.2"


@hookimpl
def register_providers(register: Callable[[Provider], None]) -> None:
    """Register the Google Ads provider (settings from ``METRICX_GOOGLE_*``)."""
    register(GoogleAdsProvider())


@hookimpl
def register_connectors(register: Callable[[OAuthConnector], None]) -> None:
    """Connect Google Ads accounts with OAuth (client id and secret from ``METRICX_GOOGLE_*``)."""
    register(GoogleConnector())


@hookimpl
def register_simulators(register: Callable[[SimulatorSpec], None]) -> None:
    """Let `metricx demo` run the Google Ads simulator."""
    register(SIMULATOR)


@hookimpl
def register_secret_patterns(register: Callable[[str | re.Pattern[str]], None]) -> None:
    """Google's ``developer-token`` header never reaches a log line."""
    register("developer-token")
