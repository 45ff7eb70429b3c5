"""Hook implementations of the test provider."""

from __future__ import annotations

from collections.abc import Callable

from core import Provider, hookimpl
from metricx_testprovider.provider import TestProvider


@hookimpl
def metricx_core_version() -> str:
    return ">=0.1,<0.2"


@hookimpl
def register_providers(register: Callable[[Provider], None]) -> None:
    register(TestProvider())
