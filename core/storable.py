"""What JSON parsing accepts but PostgreSQL cannot store, refused with a message naming where it is.

Used by the API's request bodies and by plugins for payloads pushed to them (webhooks): NaN,
Infinity and overflowing numbers (``1e999``), lone surrogates, NUL characters, deep nesting.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 32


def check_storable(value: Any, where: str = "body", depth: int = 0, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise ``ValueError`` naming ``where`` when ``value`` cannot be stored as PostgreSQL text/jsonb."""
    if depth > max_depth:
        raise ValueError(f"{where} is nested more than {max_depth} levels deep")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(
            f"{where}: numbers must be finite (NaN, Infinity and 1e999 are not valid JSON numbers)"
        )
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{where} must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                f"{where} must be valid Unicode text (it holds a lone surrogate escape)"
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            check_storable(key, f"{where} key", depth + 1, max_depth=max_depth)
            name = str(key).encode("utf-8", "replace").decode()[:40]
            check_storable(item, f"{where}.{name}", depth + 1, max_depth=max_depth)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_storable(item, f"{where}[{i}]", depth + 1, max_depth=max_depth)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_json(body: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON strictly: ValueError (never RecursionError) for invalid, non-finite or unstorable input."""
    try:
        value = json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError(f"the JSON is nested more than {max_depth} levels deep") from None
    except UnicodeDecodeError:
        raise ValueError("the body is not UTF-8 text") from None
    check_storable(value, "body", max_depth=max_depth)
    return value
