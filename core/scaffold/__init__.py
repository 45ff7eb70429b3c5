"""``metricx new-provider``: write a complete provider plugin package from the bundled template."""

from __future__ import annotations

from core.scaffold.writer import ScaffoldError, names_for, write_provider

__all__ = ["ScaffoldError", "names_for", "write_provider"]
