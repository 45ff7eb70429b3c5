"""Platform API lifecycle: which API version each provider speaks, and warnings before its sunset.

Platforms retire API versions on published dates (Meta's Graph API versions, Google Ads API
sunsets, Shopify's quarterly versions). A provider declares its :class:`~core.providers.ApiVersion`;
the scheduler calls :func:`warn_sunsets` once a day, which logs a warning from
:data:`SUNSET_WARNING_DAYS` days before a sunset and an error once it has passed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

import structlog

from core.providers import ApiVersion, Provider

log = structlog.get_logger(__name__)

#: How long before a sunset the daily warning starts.
SUNSET_WARNING_DAYS = 60
#: What a provider that declares no ``api_version`` reports.
UNDECLARED = ApiVersion("undeclared")


def api_version_of(provider: Provider) -> ApiVersion:
    """The provider's declared :class:`ApiVersion`, or :data:`UNDECLARED` (third parties may omit it)."""
    declared = getattr(provider, "api_version", None)
    return declared if isinstance(declared, ApiVersion) else UNDECLARED


def lifecycle_status(api: ApiVersion, today: date) -> str:
    """``supported`` (no date, or more than 60 days left), ``sunset_soon`` or ``sunset`` (retired)."""
    days = api.days_left(today)
    if days is None or days > SUNSET_WARNING_DAYS:
        return "supported"
    return "sunset" if days <= 0 else "sunset_soon"


def describe(provider: Provider, today: date) -> dict[str, str | int | None]:
    """The provider's API version as operators see it (``metricx plugins --json``, the API)."""
    api = api_version_of(provider)
    return {
        "version": api.version,
        "sunset": api.sunset.isoformat() if api.sunset else None,
        "days_left": api.days_left(today),
        "status": lifecycle_status(api, today),
    }


@dataclass(frozen=True, slots=True)
class SunsetNotice:
    """A provider whose API version is retired within the warning period, or already."""

    provider: str
    version: str
    sunset: date
    days_left: int

    @property
    def passed(self) -> bool:
        return self.days_left <= 0

    def message(self) -> str:
        """One line an operator can act on."""
        if self.passed:
            return (
                f"provider {self.provider!r} speaks API {self.version}, which the platform retired on "
                f"{self.sunset.isoformat()}: its calls fail; upgrade the plugin or set a newer version"
            )
        return (
            f"provider {self.provider!r} speaks API {self.version}, retired on {self.sunset.isoformat()} "
            f"({self.days_left} days left): upgrade the plugin or set a newer version before then"
        )


def sunset_notices(providers: Mapping[str, Provider], today: date) -> list[SunsetNotice]:
    """The providers whose API version sunsets within :data:`SUNSET_WARNING_DAYS` of ``today`` (or did)."""
    notices = []
    for name, provider in sorted(providers.items()):
        api = api_version_of(provider)
        days = api.days_left(today)
        if api.sunset is not None and days is not None and days <= SUNSET_WARNING_DAYS:
            notices.append(SunsetNotice(name, api.version, api.sunset, days))
    return notices


def warn_sunsets(providers: Mapping[str, Provider], today: date) -> list[SunsetNotice]:
    """Log one line per provider near or past its API sunset; returns what it logged."""
    notices = sunset_notices(providers, today)
    for notice in notices:
        emit = log.error if notice.passed else log.warning
        emit(
            "api_version_sunset_passed" if notice.passed else "api_version_sunset_soon",
            provider=notice.provider,
            api_version=notice.version,
            sunset=notice.sunset.isoformat(),
            days_left=notice.days_left,
            detail=notice.message(),
        )
    return notices
