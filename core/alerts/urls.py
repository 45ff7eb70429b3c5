"""Which webhook URLs metricx sends to: https to public addresses, unless a setting allows more.

Checked when a webhook is registered and again before every delivery (a name may
resolve elsewhere later), so alerts cannot be turned into requests to internal services.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from core.errors import ConfigError


class WebhookUrlRejected(ConfigError):
    """The URL may not receive alerts; the message says why and what to use instead."""


def _blocked(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


async def check_webhook_url(url: str, *, allow_private: bool) -> None:
    """Raise :class:`WebhookUrlRejected` unless ``url`` may receive alerts."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise WebhookUrlRejected(f"webhook URL {url!r} is not an absolute http(s) URL")
    if parts.username or parts.password:
        raise WebhookUrlRejected("put no credentials in the webhook URL: deliveries are signed instead")
    if allow_private:
        return
    if parts.scheme != "https":
        raise WebhookUrlRejected(
            "webhook URLs must use https:// (METRICX_ALERT_WEBHOOKS_ALLOW_PRIVATE is off)"
        )
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname, parts.port or 443, type=socket.SOCK_STREAM
        )
    except socket.gaierror as exc:
        raise WebhookUrlRejected(
            f"webhook host {parts.hostname!r} does not resolve: {exc.strerror}"
        ) from None
    if any(_blocked(str(info[4][0])) for info in infos):
        raise WebhookUrlRejected(
            f"webhook host {parts.hostname!r} resolves to a private or loopback address; use a public host "
            "(or set METRICX_ALERT_WEBHOOKS_ALLOW_PRIVATE=true for development)"
        )
