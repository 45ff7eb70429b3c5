"""Provider API lifecycle: declared versions, the 60-day warning window, the default for third parties."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from core import ApiVersion
from core.config import Settings
from core.lifecycle import SUNSET_WARNING_DAYS, UNDECLARED, api_version_of, sunset_notices, warn_sunsets
from core.logging import configure_logging
from core.providers import Provider

TODAY = date(2026, 12, 2)


class _Versioned:
    def __init__(self, name: str, api: ApiVersion | None) -> None:
        self.name = name
        if api is not None:
            self.api_version = api


def _providers(**apis: ApiVersion | None) -> dict[str, Provider]:
    return {name: _Versioned(name, api) for name, api in apis.items()}  # type: ignore[misc]


def test_api_version_days_and_sunset() -> None:
    api = ApiVersion("v22", date(2026, 10, 7))
    assert api.days_left(TODAY) == -56 and api.is_sunset(TODAY)
    assert not api.is_sunset(date(2026, 10, 6)) and api.is_sunset(date(2026, 10, 7))
    assert ApiVersion("v1").days_left(TODAY) is None and not ApiVersion("v1").is_sunset(TODAY)


def test_a_provider_without_a_declaration_reports_undeclared() -> None:
    assert api_version_of(_Versioned("acme", None)) is UNDECLARED  # type: ignore[arg-type]
    assert UNDECLARED.sunset is None


def test_notices_start_60_days_before_the_sunset() -> None:
    providers = _providers(
        far=ApiVersion("v3", date(2027, 2, 1)),  # 61 days
        soon=ApiVersion("v2", date(2027, 1, 31)),  # 60 days
        gone=ApiVersion("v1", date(2026, 12, 2)),  # today
        open=ApiVersion("v9"),
        none=None,
    )
    notices = {n.provider: n for n in sunset_notices(providers, TODAY)}
    assert set(notices) == {"soon", "gone"}
    assert notices["soon"].days_left == SUNSET_WARNING_DAYS and not notices["soon"].passed
    assert notices["gone"].passed


def test_warn_sunsets_logs_one_line_per_provider(capsys: Any) -> None:
    providers = _providers(soon=ApiVersion("v2", date(2027, 1, 1)), gone=ApiVersion("v1", date(2026, 10, 7)))
    configure_logging(Settings(log_format="json"), force=True)
    try:
        warn_sunsets(providers, TODAY)
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    finally:
        configure_logging(Settings(), force=True)
    by_provider = {line["provider"]: line for line in lines}
    assert by_provider["soon"]["level"] == "warning"
    assert by_provider["soon"]["event"] == "api_version_sunset_soon"
    assert by_provider["soon"]["days_left"] == 30 and by_provider["soon"]["sunset"] == "2027-01-01"
    assert by_provider["gone"]["level"] == "error"
    assert by_provider["gone"]["event"] == "api_version_sunset_passed"
    assert "retired on 2026-10-07" in by_provider["gone"]["detail"]


def test_builtin_plugins_declare_their_versions() -> None:
    from core.plugins import load_registry

    for name, provider in load_registry().providers.items():
        api = api_version_of(provider)
        assert api is not UNDECLARED and api.version, name
