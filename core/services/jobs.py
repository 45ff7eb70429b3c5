"""What a finished sync job amounts to, for the API's job route and ``metricx sync --wait``."""

from __future__ import annotations

from typing import Any


def job_outcome(success: bool, result: Any) -> tuple[str, dict[str, Any] | None, str | None]:
    """(complete | failed, result, error) of a finished arq job; a sync that failed returns normally."""
    if not success:
        return "failed", None, str(result)[:500]
    payload = result if isinstance(result, dict) else {"value": result}
    if payload.get("status") == "failed":
        return "failed", payload, str(payload.get("error") or "the sync failed")
    return "complete", payload, None
