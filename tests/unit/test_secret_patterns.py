"""Plugins register their own secret shapes (register_secret_patterns); core's redaction names no provider."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

import core.logging
from core import hookimpl
from core.config import Settings
from core.logging import configure_logging, redact_text
from core.plugins import load_registry


class _AcmePlugin:
    @hookimpl
    def register_secret_patterns(self, register: Callable[[str | re.Pattern[str]], None]) -> None:
        register("X-Acme-Key")
        register(re.compile(r"(acme_sig=)[0-9a-f]+"))


class _BadPatternPlugin:
    @hookimpl
    def register_secret_patterns(self, register: Callable[[str | re.Pattern[str]], None]) -> None:
        register("not a name")


def test_a_plugins_patterns_are_redacted_in_log_lines(capsys: Any) -> None:
    load_registry(extra_plugins=[("acme", _AcmePlugin())])
    configure_logging(Settings(log_format="json"), force=True)
    try:
        structlog.get_logger("t").info(
            "acme_call",
            request="GET /v1/x?acme_sig=deadbeef42&page=2",
            headers='{"X-Acme-Key": "ak_live_123", "Accept": "json"}',
        )
        line = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        configure_logging(Settings(), force=True)
    event = json.loads(line)
    assert "deadbeef42" not in line and "ak_live_123" not in line
    assert event["request"] == "GET /v1/x?acme_sig=[REDACTED]&page=2"
    assert event["headers"] == '{"X-Acme-Key": "[REDACTED]", "Accept": "json"}'


def test_installed_plugins_register_their_own_token_names() -> None:
    providers = load_registry().providers
    text = "x-shopify-access-token: shpat_1 url=/oauth?fb_exchange_token=EAAB2&x=1 developer-token: dev-3"
    redacted = redact_text(text)
    if "shopify" in providers:
        assert "shpat_1" not in redacted
    if "meta" in providers:
        assert "EAAB2" not in redacted and "x=1" in redacted
    if "google" in providers:
        assert "dev-3" not in redacted


def test_core_logging_names_no_provider() -> None:
    source = Path(core.logging.__file__).read_text().lower()
    names = set(load_registry().providers) | {"meta", "google", "shopify", "facebook", "fb_exchange"}
    for name in names:
        assert not re.search(rf"\b{re.escape(name)}\b", source), name


def test_a_malformed_secret_name_skips_the_plugin_with_the_reason() -> None:
    registry = load_registry(extra_plugins=[("badpattern", _BadPatternPlugin())])
    [problem] = registry.problems
    assert problem.message.startswith("plugin 'badpattern' failed in register_secret_patterns: ValueError")
    assert "compile a regex" in problem.message
