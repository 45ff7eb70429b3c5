"""The signature of an alert delivery: ``X-Metricx-Signature: t=<unix seconds>,v1=<hex>``.

``v1`` is HMAC-SHA256 of ``f"{t}.".encode() + body`` under the webhook's secret. The
timestamp lets a receiver reject replays older than a few minutes (:func:`verify`).
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Metricx-Signature"
#: How old a signature :func:`verify` accepts by default.
TOLERANCE_S = 300


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The header value for ``body`` sent now (or at ``timestamp``)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_mac(secret, t, body)}"


def verify(
    secret: str, header: str, body: bytes, *, tolerance_s: int = TOLERANCE_S, now: float | None = None
) -> bool:
    """True if ``header`` signs ``body`` under ``secret`` and is at most ``tolerance_s`` old."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        return False
    return hmac.compare_digest(_mac(secret, t, body), parts.get("v1", ""))
