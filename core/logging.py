"""Logging, configured once: structlog for our events, stdlib (arq, httpx, uvicorn) routed through it.

JSON in production (``METRICX_LOG_FORMAT=json``), console in development; unset, the
format follows whether stderr is a terminal. A redaction processor removes tokens and
e-mail addresses from every event, whatever logged it: the generic OAuth and URL shapes
below, plus what each plugin registers with the ``register_secret_patterns`` hook (core
names no provider). Tracebacks never show local variables (they held request bodies and
tokens) and are bounded in size, in every format; their text is redacted too.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import MutableMapping
from typing import Any

import structlog

from core.config import Settings, get_settings

SECRET_KEYS = re.compile(
    r"(token|secret|password|authorization|api_key|apikey|cookie|credential|email|phone)", re.I
)
SECRET_PATTERNS = [
    re.compile(r"((?:access_token|refresh_token|client_secret|password)=)[^&\s'\"]+", re.I),
    re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.I),
    # OAuth callbacks and code exchanges (core.services.connect): the code, its PKCE verifier, the state.
    re.compile(r"((?<![A-Za-z0-9_-])(?:code|code_verifier|state)=)[^&\s'\"]+"),
    re.compile(r"(redis(?:s)?://[^:/@\s]*:)[^@\s]+(@)"),
    re.compile(r"(postgres(?:ql)?(?:\+asyncpg)?://[^:/@\s]*:)[^@\s]+(@)"),
    re.compile(r"(whsec_)[A-Za-z0-9_-]+"),  # alert webhook signing secrets (core.alerts)
    # Personal data: customers' e-mail addresses (store webhooks and orders).
    re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
]
#: Frames and characters one logged traceback may take (a deep recursion must not flood the log).
TRACEBACK_MAX_FRAMES = 30
TRACEBACK_MAX_CHARS = 8000
MAX_DEPTH = 6
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
    if depth > MAX_DEPTH and isinstance(value, (dict, list, tuple)):
        return redact_text(repr(value))
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


def format_exception(exc_info: Any) -> str:
    """A traceback without local variables, at most the last ``TRACEBACK_MAX_FRAMES`` frames and
    ``TRACEBACK_MAX_CHARS`` characters, with secrets redacted."""
    _, exc, tb = exc_info
    frames = traceback.extract_tb(tb)
    limit = -TRACEBACK_MAX_FRAMES if len(frames) > TRACEBACK_MAX_FRAMES else None
    lines = traceback.format_exception(type(exc), exc, tb, limit=limit, chain=True)
    text = "".join(lines)
    if len(text) > TRACEBACK_MAX_CHARS:
        half = TRACEBACK_MAX_CHARS // 2
        text = f"{text[:half]}\n... ({len(text) - 2 * half} characters left out) ...\n{text[-half:]}"
    return redact_text(text).rstrip("\n")


def resolved_format(settings: Settings) -> str:
    """``settings.log_format``, or, unset, console on a terminal and json otherwise."""
    if settings.log_format is not None:
        return settings.log_format
    isatty = getattr(sys.stderr, "isatty", None)
    return "console" if isatty is not None and isatty() else "json"


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
        if resolved_format(settings) == "json"
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        # A line below the level is dropped first, before any processor (timestamps, redaction) runs.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
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
                # Every format: the bounded, redacted, locals-free text, before any renderer sees exc_info.
                structlog.processors.ExceptionRenderer(format_exception),
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    # `arq core.worker.WorkerSettings` gives the "arq" logger a handler of its own (arq's default
    # dictConfig) that also propagates to ours: every arq line was printed twice. One handler: ours.
    arq_logger = logging.getLogger("arq")
    arq_logger.handlers = []
    arq_logger.propagate = True
    root.setLevel(settings.log_level.upper())
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _configured = True
