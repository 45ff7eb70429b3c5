"""Alert webhooks: a workspace's URLs receive signed events when a connection needs attention.

- :mod:`core.alerts.signing`: the ``X-Metricx-Signature`` header (HMAC-SHA256, timestamped);
- :mod:`core.alerts.urls`: which URLs may be registered (https, public addresses);
- :mod:`core.alerts.webhooks`: registering, listing, removing webhooks and the delivery log;
- :mod:`core.alerts.events`: the engine's call after a status write (records and enqueues only);
- :mod:`core.alerts.delivery`: the ``deliver_alert`` job (retries with backoff).
"""

from __future__ import annotations

from core.alerts.signing import SIGNATURE_HEADER, sign, verify

__all__ = ["SIGNATURE_HEADER", "sign", "verify"]
