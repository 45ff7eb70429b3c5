"""Logging, configured once: structlog for our events, stdlib (arq, httpx, uvicorn) routed through it.

JSON in production (``METRICX_LOG_FORMAT=json``), console in development. A
redaction processor removes tokens from every event, whatever logged it: the generic
OAuth and URL shapes below, plus what each plugin registers with the
``register_secret_patterns`` hook (core names no provider).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from core.config import Settings, get_settings

SECRET_KEYS = re.compile(r"(token|secret|password|authorization|api_key|apikey|cookie|credential)", re.I)
SECRET_PATTERNS = [
    re.compile(r"((?:access_token|refresh_token|client_secret|password)=)[^&\s'\"]+", re.I),
    re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.I),
    re.compile(r"(redis(?:s)?://[^:/@\s]*:)[^@\s]+(@)"),
    re.compile(r"(postgres(?:ql)?(?:\+asyncpg)?://[^:/@\s]*:)[^@\s]+(@)"),
    re.compile(r"(whsec_)[A-Za-z0-9_-]+"),  # alert webhook signing secrets (core.alerts)
]
REDACTED = "[REDACTED]"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def secret_pattern(pattern: str | re.Pattern[str]) -> re.Pattern[str]:
    """A plugin's secret as a redaction regex: a parameter/header/field name, or a regex as is.

    A name matches ``name=value`` (query strings), ``name: value`` (headers) and
    ``"name": "value"`` (JSON, reprs), case-insensitively; the name is kept, the value replaced.
    """
    if isinstance(pattern, re.Pattern):
        return pattern
    if not _NAME.match(pattern):
        raise ValueError(f"a secret name has only letters, digits, '_-.'; compile a regex for {pattern!r}")
    return re.compile(rf"((?<![A-Za-z0-9_-]){re.escape(pattern)}['\"]?\s*[:=]\s*['\"]?)[^&'\"\s,;}}]+", re.I)


def add_secret_patterns(patterns: list[re.Pattern[str]]) -> None:
    """Redact ``patterns`` from every log line of this process from now on (idempotent)."""
    for pattern in patterns:
        if pattern not in SECRET_PATTERNS:
            SECRET_PATTERNS.append(pattern)


def _replace(match: re.Match[str]) -> str:
    if match.re.groups == 0:
        return REDACTED
    suffix = (match.group(2) or "") if match.re.groups >= 2 else ""
    return (match.group(1) or "") + REDACTED + suffix


def redact_text(text: str) -> str:
    """``text`` with every token-shaped secret replaced."""
    for pattern in SECRET_PATTERNS:
        text = pattern.sub(_replace, text)
    return text


def _redact(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if depth > 4:
        return value
    if isinstance(value, dict):
        return {
            k: (REDACTED if SECRET_KEYS.search(str(k)) and v else _redact(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(_redact(v, depth + 1) for v in value)
    return value


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: drop secrets from keys named like them and from any text."""
    for key in list(event):
        if SECRET_KEYS.search(key) and event[key]:
            event[key] = REDACTED
        else:
            event[key] = _redact(event[key])
    return event


def _component_from_logger(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if "component" not in event:
        name = str(event.get("logger", ""))
        if name.startswith("arq"):
            event["component"] = "ARQ"
    return event


_configured = False


def configure_logging(settings: Settings | None = None, *, force: bool = False) -> None:
    """Set up structlog and the stdlib root logger (idempotent)."""
    global _configured
    if _configured and not force:
        return
    settings = settings or get_settings()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _component_from_logger,
        redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info if settings.log_format == "json" else _noop,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(settings.log_level.upper())
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _configured = True


def _noop(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return event
